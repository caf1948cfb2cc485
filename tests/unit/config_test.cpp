// Config parsing: defaults, YAML sections, --set overrides, the errors that
// name the file:line, the key and the problem, and the key table behind --help.
#include <gtest/gtest.h>

#include <string>

#include "src/config.h"

namespace lockstep {
namespace {

std::string error_of(const std::string& yaml, std::vector<Override> o = {}) {
  try {
    parse_config(yaml, "cfg.yaml", o);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

const char* kBase = "data: {path: d.h5}\n";

TEST(Config, DefaultsAreTheReferenceExperiment) {
  const Config c = parse_config(kBase, "cfg.yaml");
  EXPECT_EQ(c.optimizer, OptimizerKind::kAdam);
  EXPECT_FLOAT_EQ(c.learning_rate, 1e-3f);
  EXPECT_FLOAT_EQ(c.epsilon, 1e-7f);
  EXPECT_EQ(c.batch_size, 64);
  EXPECT_EQ(c.epochs, 10);
}

TEST(Config, ReadsSectionsLayersAndOverridesInOrder) {
  const Config c = parse_config(
      "data: {path: d.h5, scale: 0.5}\n"
      "model:\n  layers:\n    - {units: 32, activation: gelu, dropout: 0.1}\n    - {units: 16, activation: tanh}\n"
      "optimizer: {name: sgd, momentum: 0.9, nesterov: true}\n"
      "train: {epochs: 3, batch_size: 128}\nstrategy: {local_replicas: auto}\n",
      "cfg.yaml",
      {parse_override("train.epochs=5"), parse_override("train.epochs=7"),
       parse_override("model.layers=[{units: 8}]")});
  EXPECT_EQ(c.epochs, 7);
  EXPECT_EQ(c.batch_size, 128);
  EXPECT_FLOAT_EQ(c.data_scale, 0.5f);
  ASSERT_EQ(c.layers.size(), 1u);
  EXPECT_EQ(c.layers[0].units, 8);
  EXPECT_EQ(c.optimizer, OptimizerKind::kSgd);
  EXPECT_TRUE(c.nesterov);
  EXPECT_EQ(c.local_replicas, 0);
}

TEST(Config, ResolvedYamlRoundTrips) {
  const Config a = parse_config(
      "data: {path: d.h5}\nmodel: {layers: [{units: 5, activation: sigmoid, dropout: 0.25}]}\n"
      "optimizer: {name: adamw, weight_decay: 0.01, schedule: cosine, warmup_steps: 10}\n",
      "cfg.yaml");
  const Config b = parse_config(a.to_yaml(), "resolved");
  EXPECT_EQ(a.to_yaml(), b.to_yaml());
  EXPECT_EQ(b.optimizer, OptimizerKind::kAdamW);
  EXPECT_EQ(b.schedule, ScheduleKind::kCosine);
  EXPECT_FLOAT_EQ(b.layers[0].dropout, 0.25f);
}

TEST(Config, ErrorsNameTheKeyAndTheProblem) {
  EXPECT_NE(error_of("data: {path: d.h5}\ntrain: {epoch: 3}\n").find("did you mean 'train.epochs'"), std::string::npos);
  EXPECT_NE(error_of(std::string(kBase) + "train: {epochs: 0}\n").find("'train.epochs': value 0 is out of range"), std::string::npos);
  EXPECT_NE(error_of(std::string(kBase) + "train: {batch_size: -64}\n").find("train.batch_size"), std::string::npos);
  EXPECT_NE(error_of(std::string(kBase) + "train: {batch_size: 6.5}\n").find("expected an integer"), std::string::npos);
  EXPECT_NE(error_of(std::string(kBase) + "optimizer: {name: rmsprop}\n").find("choose one of: sgd, adam, adamw"), std::string::npos);
  EXPECT_NE(error_of(std::string(kBase) + "model: {layers: [{units: 4, size: 3}]}\n").find("model.layers[0].size"), std::string::npos);
  EXPECT_NE(error_of(std::string(kBase) + "model: {layers: [{activation: relu}]}\n").find("needs 'units'"), std::string::npos);
  EXPECT_NE(error_of("train: {epochs: 2}\n").find("data.path' is required"), std::string::npos);
  EXPECT_NE(error_of("train: [1, 2\n").find("not valid YAML"), std::string::npos);
  EXPECT_NE(error_of("- just\n- a list\n").find("top level must be a mapping"), std::string::npos);
  EXPECT_NE(error_of(std::string(kBase) + "optimizer: {schedule: step}\n").find("decay_steps"), std::string::npos);
  EXPECT_NE(error_of(kBase, {Override{"train.seed", "[1]"}}).find("--set: key 'train.seed'"), std::string::npos);
  EXPECT_THROW(parse_override("train.epochs"), ConfigError);
  EXPECT_THROW(parse_override("no.such=1"), ConfigError);
}

TEST(Config, LayerTypesReadTheirFieldsAndRoundTrip) {
  const Config a = parse_config(
      std::string(kBase) +
          "model:\n  layers:\n"
          "    - {type: conv2d, filters: 16, kernel_size: 5, strides: 2, padding: valid, activation: tanh}\n"
          "    - {type: batch_norm, sync: false, momentum: 0.9}\n"
          "    - {type: max_pool2d, pool_size: 3, strides: 1}\n"
          "    - {type: residual, filters: 32, strides: 2}\n"
          "    - {type: global_avg_pool2d}\n    - {type: dropout, rate: 0.2}\n    - {units: 10}\n",
      "cfg.yaml");
  ASSERT_EQ(a.layers.size(), 7u);
  EXPECT_EQ(a.layers[0].type, LayerType::kConv2d);
  EXPECT_EQ(a.layers[0].filters, 16);
  EXPECT_EQ(a.layers[0].kernel_size, 5);
  EXPECT_EQ(a.layers[0].strides, 2);
  EXPECT_EQ(a.layers[0].padding, Padding::kValid);
  EXPECT_EQ(a.layers[0].activation, Activation::kTanh);
  EXPECT_FALSE(a.layers[1].sync);
  EXPECT_FLOAT_EQ(a.layers[1].momentum, 0.9f);
  EXPECT_EQ(a.layers[2].pool_size, 3);
  EXPECT_EQ(a.layers[2].pool_strides, 1);
  EXPECT_EQ(a.layers[3].type, LayerType::kResidual);
  EXPECT_TRUE(a.layers[3].sync);  // the default
  EXPECT_FLOAT_EQ(a.layers[5].dropout, 0.2f);
  EXPECT_EQ(a.layers[6].type, LayerType::kDense);  // dense stays the default type
  const Config b = parse_config(a.to_yaml(), "resolved");
  EXPECT_EQ(a.to_yaml(), b.to_yaml());
}

TEST(Config, LayerErrorsNameTheFieldAndWhatTheTypeTakes) {
  const auto layers = [](const std::string& l) { return std::string(kBase) + "model: {layers: [" + l + "]}\n"; };
  const std::string unknown = error_of(layers("{type: conv2d, filters: 8, units: 3}"));
  EXPECT_NE(unknown.find("model.layers[0].units"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("filters, kernel_size, strides, padding, activation"), std::string::npos) << unknown;
  EXPECT_NE(error_of(layers("{type: conv2d}")).find("needs 'filters'"), std::string::npos);
  EXPECT_NE(error_of(layers("{type: dropout}")).find("needs 'rate'"), std::string::npos);
  EXPECT_NE(error_of(layers("{type: conv3d}")).find("choose one of: dense, conv2d"), std::string::npos);
  EXPECT_NE(error_of(layers("{type: conv2d, filters: 4, padding: full}")).find("same, valid"), std::string::npos);
  EXPECT_NE(error_of(layers("{type: batch_norm, epsilon: 0}")).find("model.layers[0].epsilon"), std::string::npos);
  const std::string twice = error_of(layers("{type: conv2d, filters: 4, type: dense}"));
  EXPECT_NE(twice.find("model.layers[0].type': given twice in one layer"), std::string::npos) << twice;
}

TEST(Config, ErrorsNameTheLineOfTheKey) {
  EXPECT_NE(error_of("data: {path: d.h5}\ntrain:\n  seed: 1\n  epochs: 0\n").find("cfg.yaml:4: key 'train.epochs': value 0"),
            std::string::npos);
  EXPECT_NE(error_of("data: {path: d.h5}\n\ntrain: {epoch: 3}\n").find("cfg.yaml:3: unknown key 'train.epoch'"),
            std::string::npos);
  EXPECT_NE(error_of("data: {path: d.h5}\nmodel:\n  layers:\n    - {units: 4}\n    - {units: 0}\n")
                .find("cfg.yaml:5: key 'model.layers[1].units': value 0"),
            std::string::npos);
  // A value a check of several keys rejects is blamed where it was written.
  const Config c = parse_config("data: {path: d.h5}\ntrain:\n  batch_size: 32\n", "cfg.yaml",
                                {parse_override("train.epochs=2")});
  EXPECT_EQ(c.where("train.batch_size"), "cfg.yaml:3");
  EXPECT_EQ(c.where("train.seed"), "cfg.yaml");
  EXPECT_EQ(c.where("train.epochs"), "--set");
  EXPECT_NE(error_of("data: {path: d.h5}\ntrain: {batch_size: 64, micro_batch_size: 7}\n").find("cfg.yaml:2: key 'train.micro_batch_size'"),
            std::string::npos);
}

TEST(Config, DuplicateKeysNameTheKeyAndBothLines) {
  EXPECT_EQ(error_of("data: {path: d.h5}\ntrain:\n  epochs: 1\n  epochs: 2\n"),
            "cfg.yaml:4: key 'train.epochs' is given twice (lines 3 and 4); keep one of them");
  EXPECT_EQ(error_of("train: {epochs: 1}\ndata: {path: d.h5}\ntrain: {seed: 2}\n"),
            "cfg.yaml:3: key 'train' is given twice (lines 1 and 3); keep one of them");
  EXPECT_EQ(error_of("data: {path: a.h5, path: b.h5}\n"),
            "cfg.yaml:1: key 'data.path' is given twice on line 1; keep one of them");
  // The same key in two --set overrides is not a duplicate: the last one wins.
  EXPECT_EQ(parse_config(kBase, "cfg.yaml", {parse_override("train.seed=1"), parse_override("train.seed=2")}).seed, 2u);
}

// --help's defaults are what a config that leaves a key out gets: setting every
// key to its listed default changes nothing in the resolved table.
TEST(Config, HelpDefaultsAreTheDefaults) {
  const auto keys = config_key_help();
  ASSERT_EQ(keys.size(), 56u);  // one entry per declared key; update with a new key
  std::vector<Override> all;
  for (const auto& k : keys) {
    if (k.name != "data.path" && k.name != "checkpoint.dir") all.push_back(parse_override(k.name + "=" + k.default_text));
  }
  EXPECT_EQ(parse_config(kBase, "cfg.yaml", all).to_yaml(), parse_config(kBase, "cfg.yaml").to_yaml());
  EXPECT_EQ(keys[0].name, "data.path");
  EXPECT_EQ(keys[0].default_text, "(required)");
}

// Every name an enum key lists parses and is written back as itself, an unknown
// one is refused listing all of them, and --help's meaning names each one.
TEST(Config, ChoiceKeysTakeEveryListedName) {
  const std::string base = std::string(kBase) + "optimizer: {decay_steps: 10}\n";  // schedule step needs it
  int choice_keys = 0;
  for (const auto& k : config_key_help()) {
    for (const auto& name : k.choices) EXPECT_NE(k.meaning.find(name), std::string::npos) << k.name << ": " << name;
    if (k.choices.empty() || k.name == "model.layers") continue;
    ++choice_keys;
    std::string listed;
    for (const auto& name : k.choices) {
      if (!(k.name == "strategy.device" && name == "cuda")) {  // a CPU-only build refuses cuda
        bool found = false;
        for (const auto& row : parse_config(base, "cfg.yaml", {parse_override(k.name + "=" + name)}).table()) {
          found = found || (row[0] == k.name && row[1] == name);
        }
        EXPECT_TRUE(found) << k.name << "=" << name;
      }
      listed += (listed.empty() ? "" : ", ") + name;
    }
    EXPECT_NE(error_of(base, {parse_override(k.name + "=frob")}).find("(choose one of: " + listed + ")"),
              std::string::npos) << k.name;
  }
  EXPECT_EQ(choice_keys, 7);
}

TEST(Config, MissingFileIsNamed) {
  try {
    load_config("/nonexistent/x.yaml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.yaml"), std::string::npos);
  }
}

}  // namespace
}  // namespace lockstep
