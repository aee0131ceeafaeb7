#!/bin/sh
# A self-signed certificate for nginx's HTTPS listener, for local use: the
# lb-cert service of docker-compose.yml runs it before nginx starts, into the
# volume nginx reads /etc/nginx/tls from. It writes DIR/tls.crt and
# DIR/tls.key, names localhost, 127.0.0.1 and ::1, and keeps a certificate
# that is there and valid for another day (so a restart keeps what browsers
# were told to accept). Your own certificate: mount it at /etc/nginx/tls of
# the lb service instead (docs/http2.md).
set -eu
dir=${1:?usage: self-signed-cert.sh DIR}
crt=$dir/tls.crt
key=$dir/tls.key
if [ -s "$crt" ] && [ -s "$key" ] && openssl x509 -checkend 86400 -noout -in "$crt" >/dev/null; then
    echo "self-signed-cert: keeping $crt"
    exit 0
fi
mkdir -p "$dir"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
    -subj "/CN=kafka-sse-bridge local" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
    -keyout "$key.new" -out "$crt.new" 2>/dev/null
chmod 644 "$crt.new"
mv "$key.new" "$key"
mv "$crt.new" "$crt"
echo "self-signed-cert: made $crt (self-signed, for local use)"
