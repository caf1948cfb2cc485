// Golden baselines: `lockstep baseline RUN_DIR --out B.json` records what a
// finished run produced (per-epoch and final metrics, a digest and the values of
// predictions on fixed examples, weight and optimizer hashes) with its config and
// environment; `lockstep verify B.json RUN_DIR` checks a new run against it —
// exactly when the numeric environment matches, within documented tolerances
// otherwise — and prints a table of what moved and which environment entries changed.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace lockstep {

// Tolerances when the numeric environment differs (README "Golden baselines").
struct BaselineTolerance {
  double loss_abs = 0.01, loss_rel = 0.01;  // loss, val_loss, test_loss: |d| <= abs + rel*|baseline|
  double accuracy_abs = 0.02;               // accuracy, val_accuracy, test_accuracy
  double prediction_abs = 0.02;             // every probability (or output) of the fixed examples
  double weight_norm_rel = 1e-3;            // the L2 norm of the weights
};

// The baseline record of a finished run folder (manifest.json, config.yaml,
// metrics.jsonl, model.h5 or the newest checkpoint). Throws DataError naming the
// missing or unreadable file, ConfigError for a bad config.yaml.
nlohmann::json make_baseline(const std::string& run_dir);

// Compares run_dir with the baseline file and prints the comparison to stdout.
// Returns true when the run matches. Throws like make_baseline, and DataError for
// a baseline file that is missing or not a lockstep baseline.
bool verify_baseline(const std::string& baseline_path, const std::string& run_dir,
                     const BaselineTolerance& tol = {});

// Writes the baseline of run_dir to out_path atomically; prints a one-line summary.
// Throws OutputPathError (nothing written) when out_path is a folder, lies in a
// missing folder, or exists and overwrite is false.
void write_baseline(const std::string& run_dir, const std::string& out_path, bool overwrite);

}  // namespace lockstep
