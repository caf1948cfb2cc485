#!/usr/bin/env bash
# lockstep serve on 127.0.0.1 (a free port the server picks itself): the TF
# Serving REST routes, predictions equal to lockstep predict, every kind of bad
# request, a slow client, concurrency, SIGTERM draining an in-flight request and
# exiting 0 (tests/cli/serve_client.py), with batching on and off. Every wait is
# bounded; the server is killed on the way out whatever happens.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"' EXIT

make_tiny_dataset tiny.h5 96 2
cat > m.yaml <<YAML
data: {path: tiny.h5, scale: 0.0039}
model: {layers: [{units: 8, activation: gelu}, {units: 6, activation: tanh}]}
optimizer: {name: adam, learning_rate: 0.05}
train: {epochs: 2, batch_size: 16, eval_batch_size: 16, progress: false}
output: {dir: out, save_model: true}
YAML
"$LS" train m.yaml >train.log 2>&1 || { bad "train failed: $(tail -3 train.log)"; finish; exit 1; }
"$LS" predict m.yaml --checkpoint out/model.h5 --input tiny.h5 --output pred.h5 >/dev/null || bad "predict failed"

# Starts a server in the background; sets PORT, or fails the test.
start_server() {  # LOG ARGS...
  local log=$1
  shift
  "$LS" serve m.yaml --checkpoint out/model.h5 --port 0 --model-name tiny "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  PORT=
  for _ in $(seq 100); do
    PORT=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1 | cut -d: -f3)
    [ -n "$PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  bad "server did not start: $(cat "$log")"
  return 1
}

# Waits (bounded) for the server to exit; sets RC to its exit code, or "running".
wait_exit() {
  RC=running
  for _ in $(seq 100); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      wait "$SERVER_PID"
      RC=$?
      return
    fi
    sleep 0.1
  done
}

for mode in "batched:--max-batch-size 16 --batch-timeout-micros 500" "unbatched:--max-batch-size 0"; do
  label=${mode%%:*}
  # shellcheck disable=SC2086
  if start_server "$label.log" ${mode#*:} --max-body-bytes 65536 --read-timeout 1; then
    if timeout 60 "$PY" "$LOCKSTEP_SOURCE_DIR/tests/cli/serve_client.py" "$PORT" tiny tiny.h5 pred.h5 \
         "$SERVER_PID" >"$label.client.log" 2>&1; then
      ok "$label: $(grep -c '^ok' "$label.client.log") client checks pass"
    else
      bad "$label: client checks failed:"
      grep -v '^ok' "$label.client.log" | sed 's/^/    /'
    fi
    wait_exit
    if [ "$RC" = 0 ] && grep -q "stopped on signal 15" "$label.log"; then
      ok "$label: SIGTERM drained and exited 0 ($(tail -1 "$label.log"))"
    else
      bad "$label: after SIGTERM: exit $RC: $(tail -2 "$label.log")"
      kill -9 "$SERVER_PID" 2>/dev/null
    fi
    SERVER_PID=
  fi
done

# An IPv6 host is printed as a URL can hold it: http://[::1]:PORT/...
if "$PY" -c "import socket; socket.socket(socket.AF_INET6).bind(('::1', 0))" 2>/dev/null; then
  "$LS" serve m.yaml --checkpoint out/model.h5 --port 0 --model-name tiny --host ::1 >v6.log 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q 'http://' v6.log && break; sleep 0.1; done
  grep -q 'on http://\[::1\]:[0-9]*/v1/models/tiny' v6.log && ok "IPv6 host in brackets: $(grep -o 'http://[^,]*' v6.log)" ||
    bad "IPv6 URL: $(cat v6.log)"
  kill -TERM "$SERVER_PID" 2>/dev/null
  wait_exit
  [ "$RC" = 0 ] || { bad "IPv6 server after SIGTERM: exit $RC"; kill -9 "$SERVER_PID" 2>/dev/null; }
  SERVER_PID=
else
  echo "skip - IPv6 host: no ::1 on this machine"
fi

# Bad options and files: one error line, the usual exit codes.
expect_fail 2 "--port must be in" -- "$LS" serve m.yaml --checkpoint out/model.h5 --port 70000
expect_fail 2 "--model-name must be" -- "$LS" serve m.yaml --checkpoint out/model.h5 --model-name a/b
expect_fail 2 "--max-batch-size must be" -- "$LS" serve m.yaml --checkpoint out/model.h5 --max-batch-size -1
expect_fail 3 "nothere.h5" -- "$LS" serve m.yaml --checkpoint nothere.h5 --port 0
expect_fail 3 "holds a different model" -- "$LS" serve m.yaml --checkpoint out/model.h5 --port 0 \
  --set 'model.layers=[{units: 3}]'
if start_server busy.log; then
  expect_fail 1 "cannot listen on 127.0.0.1:$PORT" -- timeout 10 "$LS" serve m.yaml --checkpoint out/model.h5 --port "$PORT"
  kill -INT "$SERVER_PID"
  wait_exit
  if [ "$RC" = 0 ]; then ok "SIGINT with no requests: exit 0 ($(tail -1 busy.log))"; else bad "SIGINT: exit $RC: $(cat busy.log)"; fi
  SERVER_PID=
fi
finish
