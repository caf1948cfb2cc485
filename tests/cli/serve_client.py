# The client side of serve_test.sh (standard library only): every REST route,
# every kind of bad request, a slow client, concurrency, and a SIGTERM that must
# let an in-flight request finish. Prints "ok - ..." / "FAIL - ..." lines.
import http.client, json, os, signal, socket, sys, threading, time
import h5py, numpy as np

port, name, data, pred, server_pid = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
port = int(port)
fails = 0


def check(cond, what):
    global fails
    print(("ok   - " if cond else "FAIL - ") + what, flush=True)
    fails += 0 if cond else 1


def request(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw
    finally:
        conn.close()


def predict(body, model=name):
    b = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return request("POST", f"/v1/models/{model}:predict", b, {"Content-Type": "application/json"})


with h5py.File(data) as f:
    x = f["test/x"][...].reshape(len(f["test/x"]), -1)
with h5py.File(pred) as f:
    want = f["probabilities"][...]
rows = x.astype(int).tolist()  # raw uint8 values, as a client would send them
width = len(rows[0])

# status and metadata
st, body = request("GET", f"/v1/models/{name}")
check(st == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
      and body["model_version_status"][0]["version"] == "1", f"GET /v1/models/{name}: AVAILABLE ({st})")
st, _ = request("GET", f"/v1/models/{name}/versions/1")
check(st == 200, "GET .../versions/1: 200")
st, body = request("GET", f"/v1/models/{name}/versions/7")
check(st == 404 and "error" in body, "GET .../versions/7: 404 with an error")
st, body = request("GET", f"/v1/models/{name}/metadata")
sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"] if st == 200 else {}
dims = [d["size"] for d in sig.get("inputs", {}).get("inputs", {}).get("tensor_shape", {}).get("dim", [])]
odims = [d["size"] for d in sig.get("outputs", {}).get("probabilities", {}).get("tensor_shape", {}).get("dim", [])]
check(st == 200 and dims == ["-1", str(width)] and odims == ["-1", str(want.shape[1])]
      and sig["inputs"]["inputs"]["dtype"] == "DT_FLOAT", f"metadata: inputs {dims}, probabilities {odims}")

# predictions equal lockstep predict
st, body = predict({"instances": rows})
got = np.array(body["predictions"]) if st == 200 else np.zeros(1)
check(st == 200 and got.shape == want.shape and np.abs(got - want).max() <= 1e-5,
      f"instances: {len(rows)} rows equal lockstep predict (max diff {np.abs(got - want).max() if got.shape == want.shape else 'shape'})")
st, body = predict({"inputs": rows[:5]})
check(st == 200 and np.abs(np.array(body["outputs"]) - want[:5]).max() <= 1e-5, "inputs (columnar): outputs equal predict")
st, body = predict({"inputs": {"inputs": rows[:2]}, "signature_name": "serving_default"})
check(st == 200 and np.abs(np.array(body["outputs"]) - want[:2]).max() <= 1e-5, "named inputs with signature_name")
st, body = predict({"instances": [{"inputs": r} for r in rows[:3]]})
check(st == 200 and np.abs(np.array(body["predictions"]) - want[:3]).max() <= 1e-5, "instances as {\"inputs\": row}")
st, body = request("POST", f"/v1/models/{name}/versions/1:predict", json.dumps({"instances": rows[:1]}))
check(st == 200 and np.abs(np.array(body["predictions"]) - want[:1]).max() <= 1e-5, "POST .../versions/1:predict")
# curl -d and urllib send x-www-form-urlencoded: the body is still JSON, past 8 KiB too.
form_body = json.dumps({"instances": rows * 5})
st, body = request("POST", f"/v1/models/{name}:predict", form_body,
                   {"Content-Type": "application/x-www-form-urlencoded"})
check(len(form_body) > 8192 and st == 200 and
      np.abs(np.array(body["predictions"]) - np.tile(want, (5, 1))).max() <= 1e-5,
      f"a {len(form_body)}-byte body sent as a form (curl -d) is read as JSON")

# bad requests: 400 with {"error": ...}
bad = {
    "malformed JSON": '{"instances": [[1, 2,',
    "not JSON at all": "hello",
    "a list, not an object": "[1, 2, 3]",
    "no instances or inputs": {"rows": rows[:1]},
    "both instances and inputs": {"instances": rows[:1], "inputs": rows[:1]},
    "empty instances": {"instances": []},
    "wrong row length": {"instances": [rows[0][:-1]]},
    "one row too long": {"instances": [rows[0], rows[1] + [0]]},
    "flat list of numbers": {"instances": rows[0]},
    "a string value": {"instances": [["x"] + rows[0][1:]]},
    "a bool value": {"instances": [[True] + rows[0][1:]]},
    "a null value": {"instances": [[None] + rows[0][1:]]},
    "a nested list value": {"instances": [[[1]] + rows[0][1:]]},
    "a number beyond float32": {"instances": [[1e39] + rows[0][1:]]},
    "unknown signature": {"signature_name": "other", "instances": rows[:1]},
    "unknown named input": {"inputs": {"pixels": rows[:1]}},
}
for what, b in bad.items():
    st, body = predict(b)
    check(st == 400 and isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"],
          f"400 for {what}: {body.get('error', body)[:90] if isinstance(body, dict) else body[:60]}")
st, body = predict({"instances": rows[:1]}, model="nosuchmodel")
check(st == 404 and "nosuchmodel" in body.get("error", ""), f"404 for an unknown model: {body.get('error', '')[:70]}")
st, body = request("GET", "/v2/whatever")
check(st == 404 and "error" in body, "404 for an unknown path")
big = json.dumps({"instances": [rows[0]] * 3000})  # > the 64 KiB --max-body-bytes of the test server
st, body = predict(big)
check(st == 413 and "too large" in body.get("error", ""), f"413 for a {len(big)} byte body")

# A slow client (headers sent, body never) holds no one up and is dropped.
slow = socket.create_connection(("127.0.0.1", port), timeout=10)
slow.sendall(f"POST /v1/models/{name}:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{{\"inst".encode())
t0 = time.time()
ok_fast = all(predict({"instances": [r]})[0] == 200 for r in rows[:20])
check(ok_fast and time.time() - t0 < 5, f"20 requests served while a slow client stalls ({time.time() - t0:.2f} s)")
slow.settimeout(8)
try:
    closed = slow.recv(4096) is not None  # b"" (closed) or an error response: either way, dropped
except socket.timeout:
    closed = False
check(closed and time.time() - t0 < 8, f"the slow client is dropped after the read timeout ({time.time() - t0:.1f} s)")
slow.close()

# Concurrent single-row requests (batched together) each get their own row's answer.
results, lock = {}, threading.Lock()


def worker(k):
    for i in range(k, len(rows), 8):
        st, body = predict({"instances": [rows[i]]})
        with lock:
            results[i] = (st, body)


threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
[t.start() for t in threads]
[t.join(30) for t in threads]
good = sum(1 for i, (st, b) in results.items()
           if st == 200 and np.abs(np.array(b["predictions"][0]) - want[i]).max() <= 1e-5)
check(good == len(rows), f"8 concurrent clients: {good}/{len(rows)} single-row answers match their rows")

st, body = request("GET", f"/v1/models/{name}")
check(st == 200, "still serving after all of the above")

# SIGTERM while a request is in flight: it is answered, then the server exits.
if server_pid > 0:
    payload = json.dumps({"instances": rows[:4]}).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"POST /v1/models/{name}:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload[:10])
    time.sleep(0.2)
    os.kill(server_pid, signal.SIGTERM)
    time.sleep(0.3)
    s.sendall(payload[10:])
    reply = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    s.close()
    head, _, rest = reply.partition(b"\r\n\r\n")
    okay = head.startswith(b"HTTP/1.1 200")
    if okay:
        okay = np.abs(np.array(json.loads(rest)["predictions"]) - want[:4]).max() <= 1e-5
    status_line = head.split(b"\r\n")[0].decode() if head else "nothing"
    check(okay, f"a request in flight at SIGTERM is answered: {status_line}")

sys.exit(1 if fails else 0)
