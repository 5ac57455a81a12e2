#!/bin/sh
# worker role, port $GH_WORKER_PORT: GET /worker/health, GET /worker/status,
# POST /worker/drain, and for tests POST /worker/busy?seconds=N (one fake job for N s).
. /app/http.sh
read_request
S=/tmp/gh
now=$(date +%s)
busy_until=$(cat "$S/busy_until" 2>/dev/null || echo 0)
active=0
[ "$now" -lt "$busy_until" ] && active=1
draining=false
[ -f "$S/draining" ] && draining=true
safe=true
[ "$active" = 1 ] && safe=false
if [ "$draining" = true ]; then status=draining
elif [ "$active" = 1 ]; then status=busy
else status=idle
fi
event() { [ -d /state ] && echo "$1 $now $GH_WORKER_ID${2:+ $2}" >> /state/events.log; return 0; }

case "$METHOD $REQ_PATH" in
  "GET /worker/health")
    respond 200 "{\"status\":\"$status\",\"deploy_safe\":$safe}" ;;
  "GET /worker/status")
    respond 200 "{\"worker_id\":\"$GH_WORKER_ID\",\"active_jobs\":$active,\"is_draining\":$draining,\"uptime_ms\":$(uptime_ms)}" ;;
  "POST /worker/drain")
    touch "$S/draining"
    event drain
    respond 200 "{\"status\":\"draining\",\"active_jobs\":$active,\"deploy_safe\":$safe}" ;;
  "POST /worker/busy")
    secs=$(query_param seconds)
    case $secs in
      ''|*[!0-9]*) respond 400 '{"error":"need ?seconds=N"}' ;;
      *)
        if [ "$draining" = true ]; then
          respond 409 '{"error":"draining: not taking jobs"}'
        else
          echo $((now + secs)) > "$S/busy_until"
          event busy "$secs"
          respond 200 "{\"status\":\"busy\",\"busy_until\":$((now + secs)),\"deploy_safe\":false}"
        fi ;;
    esac ;;
  *" /worker/"*) respond 405 '{"error":"method not allowed"}' ;;
  *) respond 404 '{"error":"not found"}' ;;
esac
