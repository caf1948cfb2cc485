#!/usr/bin/env python3
"""The job users run, timed as they run it: configs/fashion_mnist_mlp.yaml on the
Fashion-MNIST HDF5 file for full epochs (build/lockstep train, as launch/run.sh
does), alternated in rounds with the peers on the same data and hyper-parameters:
PyTorch (Debian's python3-torch; eager on the same threads, DDP with gloo),
TensorFlow/Keras with MirroredStrategy over N logical CPUs, and JAX + optax (a
jitted step per batch, and an epoch under lax.scan); TensorFlow and JAX come from
PyPI into the venv of launch/pyenv.sh and are skipped, saying so, where pip
cannot install them.

Each run's number is the median of its epochs 2..N (epoch 1 holds start-up and
compilation); each comparison is the median over rounds of the per-round ratio.
The spread is the slowest epoch over the fastest, epochs 2..N. Prints the CPU
model and ISA first. Before every lockstep run it times a cache line between the
first two CPUs it may use (build/bench/core_latency), where the first two
replica threads run: a VM host may move the vCPUs between one last-level cache
and two from minute to minute, which moves the multi-replica rows by more than a
change to the step does; each run's line shows the time it saw, and the report
warns when the rounds saw both kinds.

  /usr/bin/python3 bench/real_job.py [--epochs 5] [--rounds 3] [--peers torch,ddp,tf,jax]
                                     [--scaling] [--against OTHER_BUILD/lockstep] [--json OUT.json]
                                     [--lockstep BUILD/lockstep]

--against runs a second lockstep binary (another commit's build) in the same
rounds, shipped and 1-replica, and reports this build over that one: the way a
change to the step is shown not to slow the real job.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOCKSTEP = os.path.join(ROOT, "build", "lockstep")
CONFIG = os.path.join(ROOT, "configs", "fashion_mnist_mlp.yaml")
# The cache-line probe: core_latency beside the lockstep binary that runs (main()
# points it at --lockstep's), and the first reason a probe failed.
PROBE = {"path": os.path.join(ROOT, "build", "bench", "core_latency")}
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
# One-way cache-line times (ns) above this many times the lowest seen mean the
# two CPUs sat under different last-level caches for that run.
PLACEMENT_RATIO = 2.0


def cpu_description():
    model, flags = platform.processor(), set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and model in ("", "x86_64"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx512f", "avx512_bf16", "amx_tile", "avx2", "fma") if f in flags]
    return f"{model} ({os.cpu_count()} CPUs; {' '.join(isa) or 'no AVX'})"


def line_time():
    """One-way time (ns) for a cache line between the first two CPUs this process
    may use, where the first two replica threads run (comm/placement.h): the median
    of 3 measurements by core_latency (next to the lockstep binary, in bench/).
    None where it cannot be measured; the first reason is kept in PROBE["why"]."""
    cpus = sorted(os.sched_getaffinity(0))[:2]
    why = None
    if len(cpus) < 2:
        why = "fewer than 2 CPUs allowed"
    elif not os.access(PROBE["path"], os.X_OK):
        why = f"{PROBE['path']} is not built (cmake -DLOCKSTEP_BENCH=ON)"
    else:
        try:
            out = subprocess.run([PROBE["path"], "--reps", "3", "--trips", "20000"], capture_output=True, text=True,
                                 timeout=60, preexec_fn=lambda: os.sched_setaffinity(0, cpus))
            rows = [line.split() for line in out.stdout.splitlines()]
            if out.returncode != 0 or "# FAILED" in out.stdout:
                tail = (out.stderr.strip().splitlines() or out.stdout.strip().splitlines() or ["no output"])[-1]
                why = f"core_latency failed (exit {out.returncode}: {tail})"
            else:
                for f in rows:
                    if len(f) >= 3 and f[:2] == [str(cpus[0]), str(cpus[1])]:
                        return float(f[2])
                why = f"core_latency printed no time for CPUs {cpus[0]} and {cpus[1]}"
        except (OSError, subprocess.TimeoutExpired) as e:
            why = f"core_latency did not run ({e})"
    PROBE.setdefault("why", why)
    return None


def placement_report(lines):
    """The report's lines on where the host put the first two CPUs during the rounds:
    lines maps each lockstep run to the cache-line times seen before it (None:
    not measured)."""
    times = [t for ts in lines.values() for t in ts]
    seen = [t for t in times if t is not None]
    if not seen:
        why = PROBE.get("why") or "no lockstep run"
        return [f"# cache-line time between the first two CPUs: not measured ({why})"]
    low, high = min(seen), max(seen)
    missing = len(times) - len(seen)
    note = f" ({missing} of {len(times)} runs not measured: {PROBE.get('why') or 'unknown'})" if missing else ""
    out = [f"# cache-line time between the first two CPUs before each lockstep run: {low:.0f}-{high:.0f} ns{note}"]
    if low > 0 and high > PLACEMENT_RATIO * low:
        far = sorted(name for name, ts in lines.items()
                     if any(t is not None and t > PLACEMENT_RATIO * low for t in ts))
        out.append(f"# WARNING: the host moved the first two CPUs between caches during the rounds ({low:.0f} ns and "
                   f"{high:.0f} ns seen; runs under two caches: {', '.join(far)}): multi-replica rows mix two "
                   "machines; compare rounds of one placement (the 'line' column of each run) or run again")
    return out


def steady(rates):
    """Median and spread (slowest/fastest) of epochs 2..N."""
    tail = rates[1:] if len(rates) > 1 else rates
    return statistics.median(tail), max(tail) / min(tail)


def lockstep_epochs(data, epochs, sets, ranks=1, binary=None, config=CONFIG):
    """The per-epoch metrics records of one `lockstep train` run."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "m.jsonl")
        cmd = [binary or LOCKSTEP, "train", config, "--set", f"data.path={data}", "--set", f"train.epochs={epochs}",
               "--set", "train.progress=false", "--set", f"output.dir={tmp}/out",
               "--set", "output.save_model=false", "--set", "checkpoint.every_epoch=false",
               "--metrics-out", metrics]
        for s in sets:
            cmd += ["--set", s]
        if ranks > 1:
            cmd = ["mpirun", "--oversubscribe", "-np", str(ranks), "--bind-to", "none"] + cmd
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, **MPI_ENV))
        recs = [json.loads(line) for line in open(metrics)]
        return [r for r in recs if "final" not in r]


def run_lockstep(data, epochs, sets, ranks=1, binary=None):
    return [r["samples_per_sec"] for r in lockstep_epochs(data, epochs, sets, ranks, binary)]


def run_peer(python, script, args, env=None):
    out = subprocess.run([python, os.path.join(HERE, "peers", script)] + args, check=True,
                         capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    return json.loads(out.stdout.strip().splitlines()[-1])["epoch_samples_per_sec"]


def venv_python(packages):
    try:
        out = subprocess.run([os.path.join(ROOT, "launch", "pyenv.sh")] + packages, check=True,
                             capture_output=True, text=True)
        return out.stdout.strip().splitlines()[-1]
    except subprocess.CalledProcessError as e:
        print(f"# SKIPPED {' '.join(packages)}: {e.stderr.strip().splitlines()[-1] if e.stderr else e}")
        return None


def torch_python():
    """/usr/bin/python3 once it imports torch: Debian's python3-torch is installed
    when missing (as root; otherwise the PyTorch runs are skipped, saying so)."""
    python = "/usr/bin/python3"
    probe = lambda: subprocess.run([python, "-c", "import torch, h5py"], capture_output=True).returncode == 0
    if probe():
        return python
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("# installing python3-torch (Debian) for the PyTorch runs", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "python3-torch", "python3-h5py"],
                       stdout=subprocess.DEVNULL, env=env)
        if probe():
            return python
    print(f"# SKIPPED pytorch and ddp: {python} cannot import torch (apt-get install python3-torch python3-h5py)")
    return None


def jobs(args, threads):
    """(name, thunk) for every run of a round; lockstep's first."""
    d, e = args.data, args.epochs
    one = {"OMP_NUM_THREADS": "1"}
    t = str(threads)
    out = [
        ("lockstep", lambda: run_lockstep(d, e, [])),
        ("lockstep 1 replica", lambda: run_lockstep(d, e, ["strategy.local_replicas=1"])),
    ]
    if args.against:
        other = args.against
        out += [("other build", lambda: run_lockstep(d, e, [], binary=other)),
                ("other build 1 replica", lambda: run_lockstep(d, e, ["strategy.local_replicas=1"], binary=other))]
    torch_py = args.torch_python
    if "torch" in args.peers and torch_py:
        out += [(f"pytorch {t} threads", lambda: run_peer(torch_py, "torch_job.py",
                                                          ["--data", d, "--epochs", str(e), "--threads", t],
                                                          {"OMP_NUM_THREADS": t})),
                ("pytorch 1 thread", lambda: run_peer(torch_py, "torch_job.py",
                                                      ["--data", d, "--epochs", str(e), "--threads", "1"], one))]
    if "ddp" in args.peers and torch_py:
        out.append((f"pytorch ddp {t}x1", lambda: run_peer(torch_py, "torch_job.py",
                                                            ["--data", d, "--epochs", str(e), "--ddp", t], one)))
    if "tf" in args.peers and args.tf_python:
        out.append((f"tensorflow mirrored {t} cpus", lambda: run_peer(
            args.tf_python, "tf_job.py", ["--data", d, "--epochs", str(e), "--devices", t, "--threads", t])))
    if "jax" in args.peers and args.jax_python:
        out += [("jax jit step", lambda: run_peer(args.jax_python, "jax_job.py", ["--data", d, "--epochs", str(e)])),
                ("jax scan epoch", lambda: run_peer(args.jax_python, "jax_job.py",
                                                    ["--data", d, "--epochs", str(e), "--scan"]))]
    if args.scaling:
        out += [("lockstep 2 threads batch 128", lambda: run_lockstep(
                    d, e, ["strategy.local_replicas=2", "train.batch_size=128"])),
                ("lockstep 2 ranks", lambda: run_lockstep(d, e, ["strategy.local_replicas=1"], ranks=2))]
        if "ddp" not in args.peers and torch_py:
            out.append(("pytorch ddp 2x1", lambda: run_peer(torch_py, "torch_job.py",
                                                            ["--data", d, "--epochs", str(e), "--ddp", "2"], one)))
    return out


# (numerator, denominator, target) of the ratios reported; missing runs are skipped.
def comparisons(threads):
    t = str(threads)
    rows = [("lockstep", f"pytorch {t} threads", 4.0),
            ("lockstep 1 replica", "pytorch 1 thread", 3.5),
            ("lockstep", "pytorch 1 thread", None),  # PyTorch's faster setting where 2 threads lose
            ("lockstep", "jax jit step", None), ("lockstep", "jax scan epoch", None),
            ("lockstep", "jax faster variant", 2.5),
            ("lockstep", f"tensorflow mirrored {t} cpus", 30.0),
            ("lockstep", "lockstep 1 replica", 1.6),
            ("lockstep 2 threads batch 128", "lockstep 1 replica", 1.9),
            ("lockstep 2 ranks", "lockstep", 0.9),
            ("lockstep", f"pytorch ddp {t}x1", 8.0),
            ("lockstep", "pytorch ddp 2x1", 8.0),
            ("lockstep", "other build", None),
            ("lockstep 1 replica", "other build 1 replica", None)]
    return list(dict.fromkeys(rows))  # one row each (ddp at 2 may be named twice)


def main():
    global LOCKSTEP
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "datasets", "fashion_mnist.h5"),
                    help="the Fashion-MNIST HDF5 file (default: datasets/fashion_mnist.h5)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs per run; epochs 2..N are timed (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of every run (default 3)")
    ap.add_argument("--peers", default="torch,ddp,tf,jax", help="comma list of torch, ddp, tf, jax")
    ap.add_argument("--scaling", action="store_true", help="also 2 threads at batch 128 (weak) and 2 ranks")
    ap.add_argument("--lockstep", default=LOCKSTEP,
                    help="the lockstep binary to time (default: build/lockstep); the cache-line probe is the "
                         "bench/core_latency beside it")
    ap.add_argument("--against", help="another lockstep binary to time in the same rounds (e.g. the previous commit's build)")
    ap.add_argument("--json", help="write every run's per-epoch rates and the ratios here")
    args = ap.parse_args()
    if args.against and not os.access(args.against, os.X_OK):
        sys.exit(f"real_job: --against {args.against}: not an executable lockstep binary")
    args.peers = set(filter(None, args.peers.split(",")))
    if not os.access(args.lockstep, os.X_OK):
        sys.exit(f"real_job: {args.lockstep} is missing or not executable: build first (launch/setup.sh), "
                 "or name the binary with --lockstep")
    LOCKSTEP = os.path.abspath(args.lockstep)
    PROBE["path"] = os.path.join(os.path.dirname(LOCKSTEP), "bench", "core_latency")
    if not os.path.exists(args.data):
        sys.exit(f"real_job: {args.data} is missing: make it with "
                 "build/lockstep convert idx --dir /usr/share/datasets/fashion-mnist --out " + args.data)
    if args.scaling and not shutil.which("mpirun"):
        sys.exit("real_job: --scaling runs 2 ranks and needs mpirun (apt-get install openmpi-bin)")
    args.torch_python = torch_python() if args.peers & {"torch", "ddp"} or args.scaling else None
    args.tf_python = venv_python(["tensorflow-cpu", "h5py"]) if "tf" in args.peers else None
    args.jax_python = venv_python(["jax", "optax", "h5py"]) if "jax" in args.peers else None
    threads = os.cpu_count()
    print(f"# CPU: {cpu_description()}")
    print(f"# job: {os.path.relpath(CONFIG, ROOT)} on {os.path.relpath(args.data, ROOT)}, {args.epochs} epochs, "
          f"{args.rounds} alternating rounds; samples/s = median of epochs 2..{args.epochs} of a run")
    runs, lines = {}, {}
    for rnd in range(args.rounds):
        for name, thunk in jobs(args, threads):
            mine = name.startswith("lockstep") or name.startswith("other build")
            line = line_time() if mine else None
            rates = thunk()
            runs.setdefault(name, []).append(rates)
            if mine:
                lines.setdefault(name, []).append(line)
            med, spread = steady(rates)
            seen = f"  line {line:4.0f} ns" if line is not None else ""
            print(f"  round {rnd + 1}  {name:32s} {med:12.0f} samples/s  spread {spread:5.2f}  "
                  f"epochs {' '.join(f'{r:.0f}' for r in rates)}{seen}", flush=True)
    if "jax jit step" in runs and "jax scan epoch" in runs:  # per round, whichever JAX variant ran faster
        runs["jax faster variant"] = [max(a, b, key=lambda r: steady(r)[0])
                                      for a, b in zip(runs["jax jit step"], runs["jax scan epoch"])]
    print(f"\n#{'run':>33s} {'samples/s':>12s} {'spread':>8s}\n#{'':>33s} {'(median)':>12s} {'(max)':>8s}")
    for name, all_rates in runs.items():
        meds = [steady(r)[0] for r in all_rates]
        print(f" {name:>33s} {statistics.median(meds):12.0f} {max(steady(r)[1] for r in all_rates):8.2f}")
    print(f"\n#{'ratio':>58s} {'median':>8s} {'rounds':>20s} {'target':>7s}")
    ratios = []
    for num, den, target in comparisons(threads):
        if num not in runs or den not in runs:
            continue
        per = [steady(a)[0] / steady(b)[0] for a, b in zip(runs[num], runs[den])]
        med = statistics.median(per)
        ok = "" if target is None else ("  met" if med >= target else "  MISSED")
        print(f" {num + ' / ' + den:>58s} {med:8.2f} {' '.join(f'{p:.2f}' for p in per):>20s} "
              f"{'' if target is None else f'{target:.1f}':>7s}{ok}")
        ratios.append({"numerator": num, "denominator": den, "median": med, "rounds": per, "target": target})
    if args.epochs < 3:
        print("# NOTE: with fewer than 3 epochs one epoch is timed: the spreads say nothing about noise")
    noisy = [name for name, all_rates in runs.items()
             if name.startswith("lockstep") and max(steady(r)[1] for r in all_rates) > 1.25]
    if noisy:
        print(f"# WARNING: epochs of {', '.join(noisy)} spread over 1.25x: the machine was not quiet, "
              "so the verdicts above are not reliable (run again on an idle machine, or with more rounds)")
    for line in placement_report(lines):
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_description(), "epochs": args.epochs, "runs": runs, "ratios": ratios,
                       "line_ns": lines}, f, indent=1)


if __name__ == "__main__":
    main()
