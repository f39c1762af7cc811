#!/bin/sh
# One-shot set-up of docker-compose.yml's credentials, run by its `setup` service before the
# platform starts. Into $TASKTIDE_SECRETS (default /secrets, a volume the services mount read-only)
# it writes, unless already there:
#   ca.pem, ca-key.pem                 a private CA (scripts/dev_certs.py)
#   server.pem, server-key.pem         the services' certificate, for localhost, 127.0.0.1 and the
#                                      compose service names
#   client.pem, client-key.pem         a client certificate, for mutual TLS
#   auth.key                           the token signing key (TASKTIDE_AUTH_KEY=@/secrets/auth.key)
#   worker.token                       role worker, namespace default, queue default: the worker's
#   producer.token, admin.token        for people and applications on the host
# A second run keeps what exists, so tokens stay valid across `docker compose up`; delete the volume
# (`docker compose down -v`) to start over with a new CA and key.
set -eu
dir="${TASKTIDE_SECRETS:-/secrets}"
dev_certs="${TASKTIDE_DEV_CERTS:-/app/scripts/dev_certs.py}"
umask 077
mkdir -p "$dir"
if [ ! -s "$dir/server.pem" ]; then
  python "$dev_certs" "$dir"
fi
if [ ! -s "$dir/auth.key" ]; then
  python -c 'import secrets; print(secrets.token_urlsafe(48))' > "$dir/auth.key.new"
  mv "$dir/auth.key.new" "$dir/auth.key"
fi
export TASKTIDE_AUTH_KEY="@$dir/auth.key"
token() {  # token FILE ARGS...: make FILE with `tasktide token create ARGS` unless it exists
  file="$dir/$1"
  shift
  if [ ! -s "$file" ]; then
    tasktide token create --namespace default "$@" > "$file.new"
    mv "$file.new" "$file"
  fi
}
token worker.token --role worker --queues default --subject compose-worker
token producer.token --role producer --subject compose-producer
token admin.token --role admin --subject compose-admin
chmod 644 "$dir/ca.pem"
echo "tasktide credentials in $dir"
