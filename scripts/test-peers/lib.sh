# Shared by the test-peer scripts (sourced): a free loopback port, waiting for a server to
# listen, and stopping a server by its pid file.

# Prints a TCP port on 127.0.0.1 that nothing listens on (a refused connection means free).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
}

# wait_for_port PORT NAME LOG: waits up to 30 s for PORT to accept connections; on failure
# says so and shows LOG.
wait_for_port() {
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not start; see $3" >&2
  cat "$3" >&2 || true
  return 1
}

# stop_by_pid_file DIR: stops the process whose pid is in DIR/pid (waiting up to 10 s for
# it to exit), then removes DIR.
stop_by_pid_file() {
  if [ -f "$1/pid" ]; then
    local pid
    pid=$(cat "$1/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$1"
}
