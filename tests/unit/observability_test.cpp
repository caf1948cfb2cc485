// TensorBoard encoding (CRC-32C check values, Event bytes by hand, TFRecord
// framing), the step breakdown's medians, the timeline's window and bounds, and
// the scaling report's arithmetic, each against hand-computed expectations.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/scale.h"
#include "src/step_times.h"
#include "src/tensorboard.h"
#include "src/trace.h"

namespace lockstep {
namespace {

TEST(TensorBoard, Crc32cCheckValues) {
  EXPECT_EQ(crc32c("123456789", 9), 0xe3069283u);  // the CRC-32C catalogue's check value
  const std::vector<unsigned char> zeros(32, 0), ones(32, 0xff);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8a9136aau);  // RFC 3720 B.4
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62a8ab43u);
  // (c >> 15 | c << 17) + 0xa282ead8 for c = 0xe3069283, by hand.
  EXPECT_EQ(masked_crc32c("123456789", 9), 0xc78ab0e5u);
}

TEST(TensorBoard, ScalarEventBytesByHand) {
  const std::string e = scalar_event(1.5, 3, "a", 0.5f);
  const unsigned char want[] = {
      0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f,  // wall_time (1, fixed64) = 1.5
      0x10, 0x03,                          // step (2, varint) = 3
      0x2a, 0x0a,                          // summary (5, length 10)
      0x0a, 0x08,                          //   value (1, length 8)
      0x0a, 0x01, 'a',                     //     tag (1) = "a"
      0x15, 0, 0, 0, 0x3f};                //     simple_value (2, fixed32) = 0.5f
  ASSERT_EQ(e.size(), sizeof want);
  EXPECT_EQ(std::memcmp(e.data(), want, sizeof want), 0);
  // A step of 300 takes two varint bytes: 0xac 0x02.
  const std::string big = scalar_event(0.0, 300, "a", 0.0f);
  EXPECT_EQ((unsigned char)big[10], 0xac);
  EXPECT_EQ((unsigned char)big[11], 0x02);
}

TEST(TensorBoard, RecordFraming) {
  const std::string data = "123456789";
  const std::string r = tfrecord(data);
  ASSERT_EQ(r.size(), 8 + 4 + data.size() + 4);
  uint64_t len = 0;
  uint32_t len_crc = 0, data_crc = 0;
  std::memcpy(&len, r.data(), 8);
  std::memcpy(&len_crc, r.data() + 8, 4);
  std::memcpy(&data_crc, r.data() + 12 + data.size(), 4);
  EXPECT_EQ(len, data.size());
  EXPECT_EQ(len_crc, masked_crc32c(r.data(), 8));
  EXPECT_EQ(r.substr(12, data.size()), data);
  EXPECT_EQ(data_crc, 0xc78ab0e5u);
}

TEST(StepTimes, MediansOfEachPart) {
  StepTimes t;
  t.begin_epoch(3);
  StepCounters c;
  // Steps of (input, step, comm, optimizer) seconds: (1,10,2,1), (3,20,4,2), (2,30,6,3) ms.
  const double parts[3][4] = {{1, 10, 2, 1}, {3, 20, 4, 2}, {2, 30, 6, 3}};
  for (const auto& p : parts) {
    StepCounters next{c.input + p[0] / 1e3, c.step + p[1] / 1e3, c.comm + p[2] / 1e3, c.optimizer + p[3] / 1e3};
    t.add(c, next);
    c = next;
  }
  t.add(c, c);  // a fourth step does not fit the announced three: dropped
  const StepBreakdown b = t.summary();
  EXPECT_EQ(b.steps, 3);
  EXPECT_NEAR(b.step_ms, 23.0, 1e-9);     // 11, 23, 32
  EXPECT_NEAR(b.compute_ms, 14.0, 1e-9);  // 7, 14, 21
  EXPECT_NEAR(b.allreduce_ms, 4.0, 1e-9);
  EXPECT_NEAR(b.input_ms, 2.0, 1e-9);
  EXPECT_NEAR(b.optimizer_ms, 2.0, 1e-9);
  EXPECT_DOUBLE_EQ(median({4, 1, 3, 2}), 2.5);
}

TEST(StepTimes, LineLeadsWithTheLargestPartAfterCompute) {
  StepBreakdown b;
  b.step_ms = 1.0, b.compute_ms = 0.5, b.allreduce_ms = 0.31, b.input_ms = 0.09, b.optimizer_ms = 0.1;
  const std::string line = where_time_went(b, 2);
  EXPECT_EQ(line.rfind("all-reduce wait 31% of a step at 2 replicas", 0), 0u) << line;
  EXPECT_NE(line.find("compute 0.500 ms 50%"), std::string::npos) << line;
  const std::string meetings = where_time_went(b, 2, "meeting wait");
  EXPECT_EQ(meetings.rfind("meeting wait 31% of a step at 2 replicas", 0), 0u) << meetings;
}

TEST(Trace, WindowBoundsAndJson) {
  Tracer tracer(0, 2, 3);
  tracer.start_at(10);  // steps 31..33 after 20 warm-up steps
  EXPECT_FALSE(tracer.traces_step(30));
  EXPECT_TRUE(tracer.traces_step(31));
  EXPECT_TRUE(tracer.traces_step(33));
  EXPECT_FALSE(tracer.traces_step(34));
  const auto t0 = TraceClock::now();
  TraceTrack& tr = tracer.replica(1);
  tr.set_backend("local");
  tr.set_step(31);
  tr.span("all-reduce", t0, t0 + std::chrono::microseconds(5), 668);
  const size_t capacity = 3 * 16 + 4096;
  for (size_t i = 1; i < capacity + 10; ++i) tr.span("forward", t0, t0);
  EXPECT_EQ(tr.spans().size(), capacity);
  EXPECT_EQ(tracer.dropped(), 10);
  const auto doc = nlohmann::json::parse("[" + tracer.json() + "]");
  int complete = 0;
  for (const auto& e : doc) {
    if (e["ph"] != "X") continue;
    ++complete;
    EXPECT_EQ(e["tid"], 1);
    if (e["name"] == "all-reduce") {
      EXPECT_EQ(e["args"]["bytes"], 668);
      EXPECT_EQ(e["args"]["backend"], "local");
      EXPECT_EQ(e["args"]["step"], 31);
      EXPECT_NEAR(e["dur"].get<double>(), 5.0, 1e-9);
    }
  }
  EXPECT_EQ(size_t(complete), capacity);
}

TEST(Scale, EfficiencyAgainstTheSmallestLayout) {
  std::vector<ScalePoint> pts(3);
  pts[0].ranks = 1, pts[0].local_replicas = 4, pts[0].t.replicas = 4, pts[0].t.samples_per_sec = 300;
  pts[1].ranks = 1, pts[1].local_replicas = 1, pts[1].t.replicas = 1, pts[1].t.samples_per_sec = 100;
  pts[2].ranks = 2, pts[2].local_replicas = 1, pts[2].t.replicas = 2, pts[2].t.samples_per_sec = 150;
  rate_points(pts);
  ASSERT_EQ(pts[0].t.replicas, 1);
  EXPECT_DOUBLE_EQ(pts[1].speedup, 1.5);
  EXPECT_DOUBLE_EQ(pts[1].efficiency, 0.75);
  EXPECT_DOUBLE_EQ(pts[2].efficiency, 0.75);  // 300 / 4 per replica against 100
  ScaleOptions o;
  o.config_path = "c.yaml";
  const auto j = nlohmann::json::parse(scaling_json(o, pts));
  EXPECT_EQ(j["layouts"].size(), 3u);
  EXPECT_EQ(j["layouts"][2]["local_replicas"], 4);
  const std::string md = scaling_markdown(o, pts, "");
  EXPECT_NE(md.find("| 2 x 1 | 2 | 0 | 150 | 1.50x | 0.75 |"), std::string::npos) << md;
}

TEST(Scale, RingAllReduceModelByHand) {
  AlphaBeta m;
  m.alpha_us = 5, m.bandwidth_gbps = 10;
  // 4 replicas, 1e6 bytes: 6 x 5 us + 1.5 x 1e6 / 1e10 s = 30 us + 150 us.
  EXPECT_NEAR(ring_allreduce_ms(m, 4, 1000000), 0.180, 1e-12);
  EXPECT_EQ(ring_allreduce_ms(m, 1, 1000000), 0.0);
}

TEST(Scale, ProjectionReplacesTheAllReduceOfTheLargestLayout) {
  std::vector<ScalePoint> pts(2);
  pts[0].t.replicas = 1, pts[0].t.global_batch = 64;
  pts[0].t.breakdown.step_ms = 1.0;  // 64 rows per ms per replica
  pts[1].t.replicas = 2, pts[1].t.global_batch = 64, pts[1].t.gradient_bytes = 1000000;
  pts[1].t.breakdown.compute_ms = 0.4, pts[1].t.breakdown.input_ms = 0.05,
  pts[1].t.breakdown.optimizer_ms = 0.1, pts[1].t.breakdown.allreduce_ms = 0.3;
  AlphaBeta m;
  m.alpha_us = 5, m.bandwidth_gbps = 10, m.replicas = {4, 128};
  ScaleOptions strong;
  const auto p = project(strong, m, pts);
  ASSERT_EQ(p.size(), 1u);  // 128 replicas would get half a row each: left out
  // compute 0.4 x 2/4 = 0.2, + 0.05 + 0.1 + 0.18 = 0.53 ms for 64 rows.
  EXPECT_NEAR(p[0].step_ms, 0.53, 1e-12);
  EXPECT_NEAR(p[0].samples_per_sec, 64 / 0.53e-3, 1e-6);
  EXPECT_NEAR(p[0].efficiency, 64 / 0.53 / 4 / 64, 1e-12);
  ScaleOptions weak;
  weak.weak = true;
  const auto w = project(weak, m, pts);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[1].global_batch, 32 * 128);
  // compute stays 0.4; 254 x 5 us + 2 x 127/128 x 1e6 / 1e10 s.
  EXPECT_NEAR(w[1].step_ms, 0.4 + 0.05 + 0.1 + 1.27 + 0.2 * 127.0 / 128.0, 1e-12);
}

}  // namespace
}  // namespace lockstep
