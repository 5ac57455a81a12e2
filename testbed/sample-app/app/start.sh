# Entry point: `start.sh api` or `start.sh worker` (run by /bin/busybox sh).
set -u
# FROM scratch has no applet links: make them (the container fs is writable).
[ -e /bin/sh ] || /bin/busybox --install -s /bin
mkdir -p /tmp/gh
# Start point for uptime_ms, in /proc/uptime seconds (1/100 s resolution).
read -r up _ < /proc/uptime
echo "$up" > /tmp/gh/start_uptime

role=${1:-api}
case $role in
  api) port=${GH_API_PORT:-3100}; handler=/app/api.sh; id=api ;;
  worker) port=${GH_WORKER_PORT:-3101}; handler=/app/worker.sh; id=${GH_WORKER_ID:-worker-$port} ;;
  *) echo "usage: start.sh api|worker" >&2; exit 2 ;;
esac
export GH_ROLE=$role GH_WORKER_ID=$id

event() { [ -d /state ] && echo "$1 $(date +%s) $id${2:+ $2}" >> /state/events.log; return 0; }

child=
on_term() {
  event sigterm "$role"
  echo "$role: SIGTERM, exiting" >&2
  [ -n "$child" ] && kill "$child" 2>/dev/null
  exit 0
}
trap on_term TERM INT

event start "$role image_tag=${IMAGE_TAG:-unknown}"
if [ "$role" = worker ] && [ "${GH_NO_WORKER_STATUS:-0}" = 1 ]; then
  echo "worker $id: no status server in this image" >&2
  sleep 2147483647 &
else
  echo "$role $id: listening on :$port (image_tag=${IMAGE_TAG:-unknown})" >&2
  nc -ll -p "$port" -e "$handler" &
fi
child=$!
wait "$child"
rc=$?
echo "$role: server exited ($rc)" >&2
exit 1
