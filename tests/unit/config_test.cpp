// Config parsing: defaults, YAML sections, --set overrides, and the errors that
// name the key and the problem.
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
