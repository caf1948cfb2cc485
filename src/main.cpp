// The lockstep command line — the only place that reads argv. Subcommands:
// train, evaluate, predict, export, serve, convert, scale. Every failure ends
// with one "lockstep: error: ..." line naming what was wrong and a non-zero exit
// code; never a crash or a hang.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "comm/bootstrap.h"
#include "comm/communicator.h"
#include "data/hdf5_dataset.h"
#include "data/input.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/fpenv.h"
#include "src/baseline.h"
#include "src/config.h"
#include "src/environment.h"
#include "src/onnx_export.h"
#include "src/predict.h"
#include "src/scale.h"
#include "src/serve.h"
#include "src/signals.h"
#include "src/trainer.h"
#include "src/world.h"

namespace {

using namespace lockstep;

// Exit codes: 1 runtime failure, 2 bad usage/config, 3 bad data or model file,
// 4 communication failure, 5 a file could not be written (disk full, size limit),
// 6 lockstep verify: the run differs from its baseline.
constexpr int kExitRuntime = 1, kExitUsage = 2, kExitData = 3, kExitComm = 4, kExitIo = 5, kExitMoved = 6;
constexpr const char* kExitCodesHelp =
    "Exit codes: 0 success, 1 other failure, 2 bad usage or config, 3 bad data or model file, "
    "4 communication failure, 5 a file could not be written (disk full, file-size limit), "
    "6 (verify) the run differs from the baseline; 128+N stopped by signal N.";

std::string keys_help() {
  std::string s = "Config keys (YAML sections; override any with --set key=value):\n";
  const auto keys = config_key_help();
  size_t width = 0;  // the longest key
  for (const auto& k : keys) width = std::max(width, k.name.size());
  char line[256];
  for (const auto& k : keys) {
    // A default too wide for its column goes in front of the meaning.
    const bool wide = k.default_text.size() > 14;
    const std::string meaning = wide ? "(default " + k.default_text + ") " + k.meaning : k.meaning;
    std::snprintf(line, sizeof line, "  %-*s %-14s ", int(width), k.name.c_str(), wide ? "" : k.default_text.c_str());
    s += line + meaning + "\n";
  }
  return s;
}

// CLI11 reports a missing required option or subcommand before an unknown one
// ('convert idx --frob' would say "--out is required"), so the words are walked
// first: every option must belong to the (sub)command it follows, and a word
// after a command that takes subcommands and no positional must be one of them.
// Returns the error, or "" when every word is known.
std::string unknown_word(CLI::App& app, int argc, char** argv) {
  const auto usage = [](const std::string& path) { return " (see '" + path + " --help')"; };
  CLI::App* cmd = &app;
  std::string path = "lockstep";
  for (int i = 1; i < argc; ++i) {
    const std::string w = argv[i];
    if (w == "--") break;
    const bool number = w.size() > 1 && (std::isdigit(static_cast<unsigned char>(w[1])) || w[1] == '.');
    if (w.size() > 1 && w[0] == '-' && !number) {
      std::string name = w.substr(0, w.find('='));
      if (name[1] != '-' && name.size() > 2) name = name.substr(0, 2);  // -ovalue
      const CLI::Option* opt = cmd->get_option_no_throw(name);
      if (opt == nullptr) return "unknown option '" + name + "' for '" + path + "'" + usage(path);
      if (w.find('=') == std::string::npos && name.size() == w.size()) {
        // Its values: the next words, up to the count it takes, until an option.
        for (int k = 0; k < opt->get_items_expected_max() && i + 1 < argc && argv[i + 1][0] != '-'; ++k) ++i;
      }
      continue;
    }
    const auto subs = static_cast<const CLI::App*>(cmd)->get_subcommands(std::function<bool(const CLI::App*)>{});
    const auto sub = std::find_if(subs.begin(), subs.end(), [&](const CLI::App* s) { return s->get_name() == w; });
    if (sub != subs.end()) {
      cmd = const_cast<CLI::App*>(*sub);
      path += " " + w;
      continue;
    }
    if (subs.empty()) continue;
    bool positional = false;
    for (const CLI::Option* o : cmd->get_options()) positional = positional || o->get_positional();
    if (positional) continue;
    std::string names;
    for (size_t k = 0; k < subs.size(); ++k) {
      names += (k == 0 ? "" : k + 1 == subs.size() ? " or " : ", ") + subs[k]->get_name();
    }
    return "unknown subcommand '" + w + "' of '" + path + "' (choose " + names + ")" + usage(path);
  }
  return "";
}

struct Args {
  std::string config, model, metrics_out, resume, baseline, run_dir;
  std::vector<std::string> sets;
  std::string input, split = "test", output;
  std::string idx_dir, train_images, train_labels, test_images, test_labels, out;
  bool overwrite = false, verbose = false;
  std::string format = "onnx";
  ServeOptions serve;
  std::string trace;
  int64_t trace_steps = 300;
  ScaleOptions scale;
  std::string scale_mode = "strong";
};

// The command line as typed, for the run folder's manifest.
std::string joined(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) s += (i ? " " : "") + std::string(argv[i]);
  return s;
}

// Prints the one-line error and returns its exit code; in a multi-process job
// it ends the whole job instead, so no peer waits for this process forever.
int report_fatal(const Bootstrap* boot, const char* kind, const std::string& what, int code) {
  if (boot && boot->info().size > 1) abort_job(std::string(kind) + ": " + what, code);
  std::fprintf(stderr, "lockstep: %s: %s\n", kind, what.c_str());
  return code;
}

// Runs fn and returns its exit code. Every exception ends here, written once:
// one error line and the exit code of its kind; in a multi-process job (boot
// set and more than one rank) it ends the whole job instead. boot is null for the
// subcommands that run in one process without an MPI world, and for loading the config.
template <typename Fn>
int guarded(const std::unique_ptr<Bootstrap>& boot, Fn&& fn) {
  try {
    return fn();
  } catch (const Interrupted& e) {
    // Every process stopped after the same step; finish MPI cleanly.
    if (!boot || boot->info().rank == 0) std::fprintf(stderr, "lockstep: %s\n", e.what());
    return 128 + e.signal();
  } catch (const ConfigError& e) {
    return report_fatal(boot.get(), "error", e.what(), kExitUsage);
  } catch (const OutputPathError& e) {  // an output argument, not the data
    return report_fatal(boot.get(), "error", e.what(), kExitUsage);
  } catch (const DataError& e) {
    return report_fatal(boot.get(), "error", e.what(), kExitData);
  } catch (const CommError& e) {
    return report_fatal(boot.get(), "error", std::string("communication: ") + e.what(), kExitComm);
  } catch (const IoError& e) {
    return report_fatal(boot.get(), "error", e.what(), kExitIo);
  } catch (const std::bad_alloc&) {
    return report_fatal(boot.get(), "error", "out of memory: the model, the batches or the dataset do not fit "
                        "(lower model.layers units or filters (or pool earlier), train.batch_size, train.eval_batch_size or "
                        "strategy.local_replicas)", kExitRuntime);
  } catch (const std::exception& e) {
    return report_fatal(boot.get(), "error", e.what(), kExitRuntime);
  }
}

// Runs fn inside an MPI-aware world (a world of one without a launcher).
template <typename Fn>
int with_world(int* argc, char*** argv, const CommOptions& options, Fn&& fn) {
  std::unique_ptr<Bootstrap> boot;
  return guarded(boot, [&] {
    boot = std::make_unique<Bootstrap>(argc, argv);
    cpu::init_kernels();
    auto comm = boot->make_world_communicator(options);
    World world{boot->info(), boot->world_comm(), comm.get()};
    fn(world);
    return 0;
  });
}

std::string or_default(const std::string& given, const std::string& dir, const char* name) {
  if (!given.empty()) return given;
  if (dir.empty()) {
    throw ConfigError(std::string("convert idx: give --dir or --") + name);
  }
  // --train-images -> train-images-idx3-ubyte; --test-* files are named t10k-*.
  const std::string stem = name;
  const std::string file = (stem.rfind("test", 0) == 0 ? "t10k" + stem.substr(4) : stem) +
                           (stem.find("images") != std::string::npos ? "-idx3-ubyte" : "-idx1-ubyte");
  for (const char* ext : {".gz", ""}) {
    const std::string path = dir + "/" + file + ext;
    if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
      std::fclose(f);
      return path;
    }
  }
  throw DataError(dir + ": no " + stem + " IDX file in this folder (expected e.g. " + file + ".gz)");
}

int run_convert(const Args& a) {
  return guarded(nullptr, [&] {
    Hdf5WriteOptions opt;
    opt.overwrite = a.overwrite;
    const std::string train_images = or_default(a.train_images, a.idx_dir, "train-images");
    const std::string train_labels = or_default(a.train_labels, a.idx_dir, "train-labels");
    const std::string test_images = or_default(a.test_images, a.idx_dir, "test-images");
    const std::string test_labels = or_default(a.test_labels, a.idx_dir, "test-labels");
    const ConvertSummary s =
        convert_idx_to_hdf5(train_images, train_labels, test_images, test_labels, a.out, opt);
    std::printf("%s\n", s.to_string().c_str());
    return 0;
  });
}

int run_export(const Config& config, const Args& a) {
  if (a.format != "onnx") throw ConfigError("export: --format " + a.format + " is not known (use onnx)");
  const SavedModel model = load_saved_model(config, a.model);
  std::string stem = a.config.substr(a.config.find_last_of('/') + 1);
  stem = stem.substr(0, stem.find('.'));
  export_onnx(model, stem.empty() ? "lockstep" : stem, a.out, a.overwrite);
  std::printf("exported %s (%s) -> %s (ONNX opset 13: %s [N, %lld] float32 -> %s [N, %lld])\n",
              a.model.c_str(), model.model->signature().c_str(), a.out.c_str(), kOnnxInputName,
              (long long)model.model->input_dim(), output_name(model), (long long)model.model->output_dim());
  return 0;
}

int run_baseline(const Args& a, bool verify) {
  return guarded(nullptr, [&] {
    if (!verify) {
      write_baseline(a.run_dir, a.out, a.overwrite);
      return 0;
    }
    return verify_baseline(a.baseline, a.run_dir) ? 0 : kExitMoved;
  });
}

}  // namespace

int main(int argc, char** argv) {
  // Past a file-size limit (ulimit -f) a write then fails with EFBIG, which every
  // writer reports (exit 5, the file named), instead of SIGXFSZ killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"lockstep: synchronous data-parallel training (mirrored strategy)", "lockstep"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("lockstep ") + kLockstepVersion);
  app.footer(kExitCodesHelp);
  Args a;

  auto* train = app.add_subcommand("train", "Train the model a YAML config describes");
  train->add_option("config", a.config, "experiment config (YAML)")->required();
  train->add_option("--set", a.sets, "override a config key: --set train.epochs=3 (repeatable)");
  train->add_option("--metrics-out", a.metrics_out,
                    "write metrics as JSON lines (one record per epoch, then a final record)");
  train->add_option("--resume", a.resume,
                    "continue from a checkpoint: a file, or 'auto' (the newest in checkpoint.dir; "
                    "a fresh start if there is none)")
      ->expected(0, 1)
      ->default_str("auto");
  train->add_option("--trace", a.trace,
                    "write a timeline (Chrome trace-event JSON for Perfetto or chrome://tracing): "
                    "one track per rank and replica, spans for input wait, forward, backward, "
                    "each bucket's all-reduce (or the meetings of a sum inside the update), the optimizer, "
                    "checksums, evaluation, checkpoints");
  train->add_option("--trace-steps", a.trace_steps,
                    "steps the timeline holds, after 20 warm-up steps (default 300)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  train->add_flag("--overwrite", a.overwrite,
                  "start afresh in an output.dir that holds an earlier run's work, removing that "
                  "work (model.h5, manifest.json, config.yaml, metrics.jsonl, checkpoints)");
  train->add_flag("--verbose", a.verbose, "print every config key at start, not only those that differ from the defaults");
  train->footer(keys_help());

  auto* evaluate = app.add_subcommand("evaluate", "Evaluate a saved model on data.eval_split");
  evaluate->add_option("config", a.config, "experiment config (YAML)")->required();
  evaluate->add_option("--checkpoint,--model", a.model, "model file written by train (OUTPUT_DIR/model.h5)")
      ->required();
  evaluate->add_option("--set", a.sets, "override a config key (repeatable)");
  evaluate->add_option("--metrics-out", a.metrics_out, "write the result as a JSON line");

  auto* predict_cmd = app.add_subcommand("predict", "Predict every example of a split with a saved model");
  predict_cmd->add_option("config", a.config, "experiment config (YAML) the model was trained with")->required();
  predict_cmd->add_option("--checkpoint,--model", a.model, "model file or checkpoint")->required();
  predict_cmd->add_option("--input", a.input, "HDF5 dataset in the lockstep layout")->required();
  predict_cmd->add_option("--split", a.split, "group of the input file to predict (default test)");
  predict_cmd->add_option("--output,-o", a.output,
                          "predictions: *.h5 -> HDF5 (/probabilities or /outputs, /classes); "
                          "otherwise JSON lines")->required();
  predict_cmd->add_option("--set", a.sets, "override a config key (repeatable)");
  predict_cmd->add_flag("--overwrite", a.overwrite, "replace an existing output file");

  auto* scale = app.add_subcommand(
      "scale", "Run the job at several layouts to steady state; write DIR/scaling.md, .json and .png");
  scale->add_option("config", a.config, "experiment config (YAML)")->required();
  scale->add_option("--replicas", a.scale.replicas, "replica threads per process, e.g. 1,2,4 (default 1,2)")
      ->delimiter(',')
      ->check(CLI::Range(1, 4096));
  scale->add_option("--ranks", a.scale.ranks,
                    "processes, e.g. 1,2 (default 1); more than 1 runs under mpirun, skipped when mpirun "
                    "is not on PATH")
      ->delimiter(',')
      ->check(CLI::Range(1, 4096));
  scale->add_option("--mode", a.scale_mode,
                    "strong: the global batch (train.batch_size) stays; weak: the per-replica batch "
                    "of the smallest layout stays (default strong)")
      ->check(CLI::IsMember({"strong", "weak"}));
  scale->add_option("--steps", a.scale.steps, "timed steps per layout (default 2000)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  scale->add_option("--warmup", a.scale.warmup, "untimed steps before them (default 200)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  scale->add_option("--out", a.scale.out_dir, "folder for scaling.md, scaling.json, scaling.png")->required();
  scale->add_option("--project", a.scale.projection,
                    "also project to larger clusters with an alpha-beta model of a ring all-reduce: a YAML "
                    "file {alpha_us: 5, bandwidth_gbps: 100, replicas: [8, 16, 64]} (marked as a model)");
  scale->add_option("--set", a.sets, "override a config key for every layout (repeatable)");
  auto* baseline_cmd = app.add_subcommand(
      "baseline", "Write a golden baseline of a finished run folder (metrics, prediction digest, weight hash, environment)");
  baseline_cmd->add_option("run_dir", a.run_dir, "the run's output.dir")->required();
  baseline_cmd->add_option("--out,-o", a.out, "baseline file to write (JSON)")->required();
  baseline_cmd->add_flag("--overwrite", a.overwrite, "replace an existing baseline file");
  auto* verify_cmd = app.add_subcommand(
      "verify", "Check a run folder against a golden baseline: exit 0 when it matches, 6 when it moved");
  verify_cmd->add_option("baseline", a.baseline, "baseline file written by 'lockstep baseline'")->required();
  verify_cmd->add_option("run_dir", a.run_dir, "the run's output.dir")->required();
  verify_cmd->footer(
      "Exact comparison when the environment entries that change numerics (lockstep_version, numeric_code, "
      "compiler, build_flags, blas, cpu_isa) match; otherwise losses within 0.01 + 1% of the baseline, "
      "accuracies within 0.02, each prediction within 0.02 and the weight norm within 0.1%. The config "
      "(except output.*, checkpoint.*, comm.*, data.path/prefetch/gather, train.progress) must match; "
      "strategy.check_every may differ, and strategy.local_replicas where the replicas in sync are as many "
      "or the run is deterministic.");

  auto* export_cmd = app.add_subcommand("export", "Write a saved model in an exchange format (ONNX)");
  export_cmd->add_option("config", a.config, "experiment config (YAML) the model was trained with")->required();
  export_cmd->add_option("--checkpoint,--model", a.model, "model file or checkpoint")->required();
  export_cmd->add_option("--format", a.format, "onnx (the only format; default)");
  export_cmd->add_option("--out,-o", a.out, "output file (model.onnx)")->required();
  export_cmd->add_option("--set", a.sets, "override a config key (repeatable)");
  export_cmd->add_flag("--overwrite", a.overwrite, "replace an existing output file");

  auto* serve_cmd = app.add_subcommand(
      "serve", "Serve a saved model over TensorFlow Serving's REST API (SIGTERM drains, exits 0)");
  serve_cmd->add_option("config", a.config, "experiment config (YAML) the model was trained with")->required();
  serve_cmd->add_option("--checkpoint,--model", a.serve.model_path, "model file or checkpoint")->required();
  serve_cmd->add_option("--port", a.serve.port, "TCP port (default 8501; 0 = any free port, printed)");
  serve_cmd->add_option("--host", a.serve.host,
                        "address to listen on (default 127.0.0.1; 0.0.0.0 = every interface)");
  serve_cmd->add_option("--model-name", a.serve.model_name, "the NAME in the URLs (default 'default')");
  serve_cmd->add_option("--max-batch-size", a.serve.max_batch_size,
                        "rows per batched forward pass (default 64; 0 = no batching)");
  serve_cmd->add_option("--batch-timeout-micros", a.serve.batch_timeout_us,
                        "how long a batch's first request waits for more to join, in microseconds "
                        "(default 0: none; requests that arrive while a forward pass runs form the next batch)");
  serve_cmd->add_option("--threads", a.serve.threads,
                        "HTTP worker threads, each serving one open connection at a time (default 64)");
  serve_cmd->add_option("--max-body-bytes", a.serve.max_body_bytes,
                        "larger request bodies get 413 (default 16777216)");
  serve_cmd->add_option("--read-timeout", a.serve.read_timeout_s,
                        "seconds a client may stay silent mid-request before it is dropped (default 5)");
  serve_cmd->add_option("--set", a.sets, "override a config key (repeatable)");

  auto* convert = app.add_subcommand("convert", "Convert datasets to the lockstep HDF5 layout");
  convert->require_subcommand(1);
  auto* idx = convert->add_subcommand(
      "idx", "MNIST-style IDX files (raw or .gz) -> HDF5 with /train and /test splits");
  idx->add_option("--dir", a.idx_dir,
                  "folder holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] "
                  "(e.g. /usr/share/datasets/fashion-mnist)");
  idx->add_option("--train-images", a.train_images, "training images (idx3-ubyte)");
  idx->add_option("--train-labels", a.train_labels, "training labels (idx1-ubyte)");
  idx->add_option("--test-images", a.test_images, "test images (idx3-ubyte)");
  idx->add_option("--test-labels", a.test_labels, "test labels (idx1-ubyte)");
  idx->add_option("--out,-o", a.out, "output HDF5 file")->required();
  idx->add_flag("--overwrite", a.overwrite, "replace an existing output file");

  const std::string command_line = joined(argc, argv);
  if (const std::string bad = unknown_word(app, argc, argv); !bad.empty()) {
    std::fprintf(stderr, "lockstep: error: %s\n", bad.c_str());
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "lockstep: error: %s (see 'lockstep --help')\n", e.what());
    return kExitUsage;
  }

  if (*convert) return run_convert(a);
  if (*baseline_cmd || *verify_cmd) return run_baseline(a, bool(*verify_cmd));
  // Config errors are found before MPI starts, the same on every process.
  std::vector<Override> overrides;
  Config config;
  if (const int code = guarded(nullptr, [&] {
        for (const auto& s : a.sets) overrides.push_back(parse_override(s));
        config = load_config(a.config, overrides);
        return 0;
      })) {
    return code;
  }
  // The main thread computes too (predict, replica 0); train.flush_denormals.
  cpu::set_flush_denormals(config.flush_denormals);
  if (*predict_cmd) {
    return guarded(nullptr, [&] {
      PredictArgs p{a.model, a.input, a.split, a.output, a.overwrite};
      const int64_t n = predict(config, p);
      std::printf("predicted %lld examples of %s:/%s -> %s\n", (long long)n, a.input.c_str(),
                  a.split.c_str(), a.output.c_str());
      return 0;
    });
  }
  if (*scale) {
    a.scale.config_path = a.config;
    a.scale.overrides = overrides;
    a.scale.weak = a.scale_mode == "weak";
    return with_world(&argc, &argv, comm_options(config),
                      [&](World& world) { run_scale(a.scale, world); });
  }
  if (*train && a.overwrite && !a.resume.empty()) {
    return report_fatal(nullptr, "error", "--resume and --overwrite exclude each other: continue the run "
                        "in output.dir, or replace it", kExitUsage);
  }
  if (*export_cmd) return guarded(nullptr, [&] { return run_export(config, a); });
  if (*serve_cmd) {
    return guarded(nullptr, [&] {
      serve(config, a.serve);  // returns once a SIGTERM/SIGINT has drained it
      return 0;
    });
  }
  if (*train) {
    return with_world(&argc, &argv, comm_options(config), [&](World& world) {
      Trainer trainer(config, world);
      RunFolderOptions run;
      run.overwrite = a.overwrite;
      run.command_line = command_line;
      trainer.set_run_options(run, a.verbose);
      if (!a.trace.empty()) trainer.set_trace(a.trace, a.trace_steps);
      trainer.fit(a.metrics_out, a.resume);
    });
  }
  return with_world(&argc, &argv, comm_options(config), [&](World& world) {
    Trainer trainer(config, world);
    trainer.evaluate_saved(a.model, a.metrics_out);
  });
}
