// The floating-point mode of a compute thread. Denormal (subnormal) floats take
// a slow microcode path on x86 (about 100 cycles per operation): a trained
// network's small gradients and Adam's second moments drift into that range, and
// a whole epoch then runs 2-3x slower. Flushing them to zero is what TensorFlow
// does on its compute threads; lockstep does it on every thread that computes.
#pragma once

namespace lockstep::cpu {

// Sets (on = true) or clears flush-to-zero and denormals-are-zero for the
// CALLING thread only: results that would be denormal become 0, and denormal
// inputs are read as 0. Threads started afterwards by this thread inherit the
// mode (Linux copies it), but each compute thread sets it itself anyway.
// Returns false where the CPU has no such mode (then nothing changes).
bool set_flush_denormals(bool on);

// Whether the calling thread flushes denormals (both flags set).
bool flushing_denormals();

}  // namespace lockstep::cpu
