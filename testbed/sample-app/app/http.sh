# Tiny HTTP/1.1 helpers for handlers run by `nc -ll -e` (socket on stdin/stdout).
CR=$(printf '\r')

# Sets METHOD, REQ_PATH, QUERY; reads and discards headers and any body.
read_request() {
  read -r METHOD TARGET _ || exit 0
  REQ_PATH=${TARGET%%\?*}
  QUERY=
  case $TARGET in *\?*) QUERY=${TARGET#*\?} ;; esac
  clen=0
  while IFS= read -r line; do
    line=${line%"$CR"}
    [ -z "$line" ] && break
    case $line in
      [Cc]ontent-[Ll]ength:*) clen=$(echo "${line#*:}" | tr -dc 0-9) ;;
    esac
  done
  [ "${clen:-0}" -gt 0 ] && head -c "$clen" > /dev/null
  return 0
}

# respond STATUS JSON
respond() {
  case $1 in
    200) reason=OK ;; 404) reason="Not Found" ;; 405) reason="Method Not Allowed" ;;
    400) reason="Bad Request" ;; 409) reason=Conflict ;; *) reason="Internal Server Error" ;;
  esac
  printf 'HTTP/1.1 %s %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
    "$1" "$reason" "${#2}" "$2"
}

uptime_ms() {
  awk -v s="$(cat /tmp/gh/start_uptime)" '{ printf "%d", ($1 - s) * 1000 }' /proc/uptime
}

# query_param NAME: value of NAME in QUERY (empty if absent)
query_param() {
  echo "$QUERY" | tr '&' '\n' | sed -n "s/^$1=//p" | head -n 1
}
