// The TF Serving JSON bodies (src/serve_request.h) and the server-side batcher
// (src/batcher.h), without sockets: exact parses and answers, every rejection,
// and batches that keep each caller's rows in place under concurrency.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/batcher.h"
#include "src/serve_request.h"

namespace lockstep {
namespace {

TEST(ServeRequest, ParsesRowAndColumnarForms) {
  const auto a = parse_predict_request(R"({"instances": [[1, 2.5, -3], [0, 0, 255]]})", 3, "inputs");
  EXPECT_EQ(a.rows, 2);
  EXPECT_FALSE(a.columnar);
  EXPECT_EQ(a.x, (std::vector<float>{1, 2.5f, -3, 0, 0, 255}));
  const auto b = parse_predict_request(R"({"inputs": {"inputs": [[4, 5]]}, "signature_name": "serving_default"})",
                                       2, "inputs");
  EXPECT_TRUE(b.columnar);
  EXPECT_EQ(b.x, (std::vector<float>{4, 5}));
  const auto c = parse_predict_request(R"({"instances": [{"inputs": [7, 8]}]})", 2, "inputs");
  EXPECT_EQ(c.x, (std::vector<float>{7, 8}));
}

TEST(ServeRequest, RejectsWhatTfServingRejects) {
  const char* bodies[] = {
      "",  "{", "[1]", "{\"instances\": [[1, 2]], \"inputs\": [[1, 2]]}", "{}",
      "{\"instances\": []}", "{\"instances\": [[1]]}", "{\"instances\": [[1, 2, 3]]}",
      "{\"instances\": [1, 2]}", "{\"instances\": [[1, \"2\"]]}", "{\"instances\": [[1, true]]}",
      "{\"instances\": [[1, null]]}", "{\"instances\": [[1, 1e39]]}", "{\"instances\": [[1, [2]]]}",
      "{\"instances\": [{\"x\": [1, 2]}]}", "{\"inputs\": {\"x\": [[1, 2]]}}",
      "{\"signature_name\": \"other\", \"instances\": [[1, 2]]}", "{\"instances\": {\"a\": 1}}"};
  for (const char* body : bodies) {
    EXPECT_THROW(parse_predict_request(body, 2, "inputs"), BadRequest) << body;
  }
  try {
    parse_predict_request("{\"instances\": [[1, 2], [3]]}", 2, "inputs");
    FAIL() << "no throw";
  } catch (const BadRequest& e) {
    EXPECT_NE(std::string(e.what()).find("instance 1 has the wrong shape"), std::string::npos) << e.what();
  }
}

TEST(ServeRequest, ResponsesRoundTripFloatsExactly) {
  const std::vector<float> y = {0.1f, 1.0f / 3.0f, 1e-30f, -2.5f, 123456.78f, 0.0f};
  for (bool columnar : {false, true}) {
    const auto doc = nlohmann::json::parse(predict_response(y.data(), 2, 3, columnar));
    const auto& rows = doc[columnar ? "outputs" : "predictions"];
    ASSERT_EQ(rows.size(), 2u);
    for (int i = 0; i < 2; ++i) {
      for (int j = 0; j < 3; ++j) EXPECT_EQ(rows[i][j].get<float>(), y[size_t(i * 3 + j)]);
    }
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(nlohmann::json::parse(predict_response(&nan, 1, 1, false))["predictions"][0][0].is_null());
  EXPECT_EQ(nlohmann::json::parse(error_body("bad \"x\"\n"))["error"], "bad \"x\"\n");
}

// y = 2x over rows of `width`; records the largest batch run. Each run takes
// 200 us, so callers arriving meanwhile queue up and share the next one.
Batcher::Run doubling(std::atomic<int64_t>& largest, int64_t width = 1) {
  return [&largest, width](const float* x, int64_t rows, float* y) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    int64_t seen = largest.load();
    while (rows > seen && !largest.compare_exchange_weak(seen, rows)) {
    }
    for (int64_t i = 0; i < rows * width; ++i) y[i] = 2 * x[i];
  };
}

TEST(Batcher, ConcurrentCallersGetTheirOwnRowsAndShareBatches) {
  std::atomic<int64_t> largest{0};
  Batcher batcher(1, 1, 8, std::chrono::microseconds(500), doubling(largest));
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 50; ++k) {
        const float x = float(t * 1000 + k);
        float y = -1;
        batcher.infer(&x, 1, &y);
        if (y != 2 * x) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(batcher.rows_done(), 400);
  EXPECT_LT(batcher.batches(), 300);  // requests shared forward passes
  EXPECT_LE(largest.load(), 8);       // never more than max_rows
}

TEST(Batcher, AtMostLanesRunsAtOnceAndBatchesFormWhenAllAreBusy) {
  std::atomic<int> running{0}, most{0};
  const Batcher::Run run = [&](const float* x, int64_t rows, float* y) {
    const int now = ++running;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    for (int64_t i = 0; i < rows; ++i) y[i] = x[i] + 1;
    --running;
  };
  Batcher batcher(1, 1, 16, std::chrono::microseconds(0), run, 2);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 20; ++k) {
        const float x = float(t * 100 + k);
        float y = 0;
        batcher.infer(&x, 1, &y);
        if (y != x + 1) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(most.load(), 2);  // both lanes used, never a third run
  EXPECT_EQ(batcher.rows_done(), 160);
  EXPECT_LT(batcher.batches(), 160);  // with both lanes busy, queued requests shared passes
}

TEST(Batcher, LargeRequestRunsAloneAndErrorsReachTheCaller) {
  std::atomic<int64_t> largest{0};
  Batcher batcher(2, 2, 4, std::chrono::microseconds(0), doubling(largest, 2));
  std::vector<float> x(20), y(20);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i);
  batcher.infer(x.data(), 10, y.data());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], 2 * x[i]);
  EXPECT_EQ(largest.load(), 10);
  Batcher failing(1, 1, 4, std::chrono::microseconds(0),
                  [](const float*, int64_t, float*) { throw std::runtime_error("boom"); });
  float one = 1, out = 0;
  EXPECT_THROW(failing.infer(&one, 1, &out), std::runtime_error);
}

}  // namespace
}  // namespace lockstep
