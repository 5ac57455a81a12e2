#!/bin/sh
# api role, port 3100: GET /health, GET /health/version
. /app/http.sh
read_request
case "$METHOD $REQ_PATH" in
  "GET /health")
    if [ "${GH_BROKEN:-0}" = 1 ]; then
      respond 500 '{"status":"error","error":"image built with BROKEN=1"}'
    else
      respond 200 '{"status":"ok"}'
    fi ;;
  "GET /health/version")
    respond 200 "{\"service\":\"ghosthands\",\"commit_sha\":\"${COMMIT_SHA:-unknown}\",\"image_tag\":\"${IMAGE_TAG:-unknown}\",\"build_time\":\"${BUILD_TIME:-unknown}\",\"uptime_ms\":$(uptime_ms),\"node_env\":\"${NODE_ENV:-development}\"}" ;;
  *" /health"|*" /health/version") respond 405 '{"error":"method not allowed"}' ;;
  *) respond 404 '{"error":"not found"}' ;;
esac
