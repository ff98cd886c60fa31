#!/usr/bin/env bash
# A whole session on "two machines": web (runserver) and worker (qcluster) with different MEDIA_ROOTs and no
# shared disk, the report in moto's S3-compatible server, downloaded through the web. Needs PostgreSQL.
#   bash bench/two_machines.sh [SIMS]        (prints each step, the timings and the report's checksum both ways)
set -euo pipefail
cd "$(dirname "$0")/.."
SIMS=${1:-10000}
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d /tmp/two-machines.XXXX)
DB=${BENCH_DB:-carrieropt_two_machines}
S3_PORT=${S3_PORT:-5071}; WEB_PORT=${WEB_PORT:-8071}; SIM_PORT=${SIM_PORT:-8771}
export DEBUG=1 DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" SIMULATOR_URL="http://127.0.0.1:$SIM_PORT"
export REPORTS_S3_BUCKET=reports REPORTS_S3_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" REPORTS_S3_REGION=us-east-1
export REPORTS_S3_ACCESS_KEY_ID=bench-access REPORTS_S3_SECRET_ACCESS_KEY=bench-secret
export EMAIL_BACKEND=django.core.mail.backends.locmem.EmailBackend
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
AWS_ACCESS_KEY_ID=bench-access AWS_SECRET_ACCESS_KEY=bench-secret \
  $PY -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 & pids+=($!)
$PY manage.py run_carrier_simulator --port "$SIM_PORT" --sims "$SIMS" --seed 7 >"$WORK/simulator.log" 2>&1 & pids+=($!)
until curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/"; do sleep 0.2; done
$PY - <<PY
import boto3
boto3.client("s3", endpoint_url="http://127.0.0.1:$S3_PORT", region_name="us-east-1", aws_access_key_id="bench-access",
             aws_secret_access_key="bench-secret").create_bucket(Bucket="reports")
PY
MEDIA_ROOT="$WORK/setup" $PY manage.py migrate --no-input -v0
MEDIA_ROOT="$WORK/setup" $PY manage.py seed_demo --devices "$SIMS" --seed 7 >"$WORK/seed.log"
PROVIDER=$($PY manage.py shell -c "from rateplans.models import ServiceProvider as S; print(S.objects.get().pk)" 2>/dev/null | tail -1)
TOKEN=$($PY manage.py shell -c "
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from carrieropt.models import Tenant
user, _ = User.objects.get_or_create(username='bench')
for tenant in Tenant.objects.all(): tenant.users.add(user)
print(Token.objects.get_or_create(user=user)[0].key)" 2>/dev/null | tail -1)

echo "worker: MEDIA_ROOT=$WORK/worker manage.py qcluster"
MEDIA_ROOT="$WORK/worker" Q_WORKERS=2 $PY manage.py qcluster >"$WORK/qcluster.log" 2>&1 & pids+=($!)
echo "web:    MEDIA_ROOT=$WORK/web manage.py runserver 127.0.0.1:$WEB_PORT --noreload"
MEDIA_ROOT="$WORK/web" $PY manage.py runserver "127.0.0.1:$WEB_PORT" --noreload >"$WORK/web.log" 2>&1 & pids+=($!)
until curl -s -o /dev/null "http://127.0.0.1:$WEB_PORT/health/"; do sleep 0.2; done

echo "start:  POST /api/sessions/ {provider: $PROVIDER, sync_devices: true} on the web"
START=$(date +%s.%N)
GUID=$(curl -sf -H "Authorization: Token $TOKEN" -H 'Content-Type: application/json' \
  -d "{\"provider\": $PROVIDER, \"sync_devices\": true}" "http://127.0.0.1:$WEB_PORT/api/sessions/" \
  | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
while :; do
  STATUS=$(curl -sf -H "Authorization: Token $TOKEN" "http://127.0.0.1:$WEB_PORT/api/sessions/$GUID/" \
    | $PY -c 'import json,sys; b=json.load(sys.stdin); print(b["status"], b["percentage"])')
  case "$STATUS" in pending*|running*) sleep 0.5;; *) break;; esac
done
END=$(date +%s.%N)
echo "session $GUID: $STATUS after $(echo "$END - $START" | bc) s"
curl -sf -H "Authorization: Token $TOKEN" -o "$WORK/downloaded.xlsx" -w "download: HTTP %{http_code}, %{size_download} bytes, %{time_total} s\n" \
  "http://127.0.0.1:$WEB_PORT/api/sessions/$GUID/report/"
$PY - <<PY
import boto3, hashlib
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:$S3_PORT", region_name="us-east-1",
                  aws_access_key_id="bench-access", aws_secret_access_key="bench-secret")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="reports").get("Contents", [])]
stored = s3.get_object(Bucket="reports", Key=f"reports/device_assignments_$GUID.xlsx")["Body"].read()
downloaded = open("$WORK/downloaded.xlsx", "rb").read()
print("bucket:", keys)
print("sha256 in the bucket:", hashlib.sha256(stored).hexdigest())
print("sha256 downloaded:   ", hashlib.sha256(downloaded).hexdigest())
PY
echo "files on the worker's and the web's disks (MEDIA_ROOT):"
find "$WORK/worker" "$WORK/web" -type f 2>/dev/null | sed 's/^/  /' || true
[ -z "$(find "$WORK/worker" "$WORK/web" -type f 2>/dev/null)" ] && echo "  none"
