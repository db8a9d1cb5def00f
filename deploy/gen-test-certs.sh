#!/usr/bin/env bash
# Make a private CA, a broker certificate and client certificates with openssl, for tests and pilots.
#
#   deploy/gen-test-certs.sh DIR [BROKER_NAME [CLIENT_CN ...]]
#
#   DIR/ca.crt ca.key                       the CA (keep ca.key offline in production)
#   DIR/broker.crt broker.key               server cert; SAN: BROKER_NAME, localhost, 127.0.0.1, ::1
#   DIR/<cn>.crt <cn>.key                   one client cert per CLIENT_CN (a gateway id: its MQTT identity
#                                           on a `use_identity_as_username` listener)
#
# BROKER_NAME defaults to localhost; CLIENT_CN defaults to gw-test-01. Re-running reuses an existing CA and broker
# certificate (same name), so new gateways can be added later:  deploy/gen-test-certs.sh /root/yujing-ca mqtt.example.org gw-new-07
# Production: the same commands with a CA kept off the broker, or your organisation's PKI.
set -euo pipefail
dir=${1:?usage: gen-test-certs.sh DIR [BROKER_NAME [CLIENT_CN ...]]}
broker=${2:-localhost}
shift $(( $# >= 2 ? 2 : $# ))
clients=("$@")
[ ${#clients[@]} -gt 0 ] || clients=(gw-test-01)
days=${DAYS:-825}
mkdir -p "$dir"
cd "$dir"
umask 077

if [ ! -f ca.key ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.crt \
    -subj "/O=Yujing/CN=Yujing test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

sign() {  # name cn extfile
  openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout "$1.key" -out "$1.csr" -subj "/O=Yujing/CN=$2" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -sha256 \
    -extfile "$3" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$3"
}

san="DNS:localhost,IP:127.0.0.1,IP:::1"
case $broker in
  localhost) ;;
  *[!0-9.]*) san="DNS:$broker,$san" ;;
  *) san="IP:$broker,$san" ;;
esac
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
  "$san" > broker.ext
# Keep an existing broker certificate for the same name (adding gateways later must not re-key the broker).
if [ -f broker.crt ] && openssl x509 -in broker.crt -noout -subject 2>/dev/null | grep -q "CN *= *$broker\$"; then
  rm -f broker.ext
else
  sign broker "$broker" broker.ext
fi

for cn in "${clients[@]}"; do
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
    > "$cn.ext"
  sign "$cn" "$cn" "$cn.ext"
done
chmod 0644 ./*.crt
echo "certificates in $(pwd): ca.crt broker.crt ${clients[*]/%/.crt}"
