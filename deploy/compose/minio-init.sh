#!/bin/sh
# One-shot setup of the MinIO of compose.server.yml, safe to run again on every `up`: private buckets,
# one user per client whose policy names only its own buckets, and the lifecycle rule that expires raw
# packages the worker has tagged imported. Root's credentials arrive as MC_HOST_local and the users'
# passwords reach mc on stdin: no secret is ever on a command line.
set -eu

TINYSPHERE_BUCKETS="packages drift-samples prediction-images data-logs bundles"
IMPORTED_TAG_KEY=tinysphere-imported
days=${TINYSPHERE_PACKAGE_RETENTION_DAYS:-30}
case $days in
  '' | *[!0-9]* | 0) echo "TINYSPHERE_PACKAGE_RETENTION_DAYS must be a whole number of days, at least 1" >&2; exit 1 ;;
esac

for bucket in $TINYSPHERE_BUCKETS mlflow; do
  mc mb --ignore-existing "local/$bucket"
  mc anonymous set none "local/$bucket"
done

# arns BUCKET...: the bucket and object ARNs of the given buckets, as a JSON list body.
arns() {
  list=""
  for bucket in "$@"; do
    list="$list\"arn:aws:s3:::$bucket\",\"arn:aws:s3:::$bucket/*\","
  done
  printf '%s' "${list%,}"
}

OBJECT_ACTIONS='"s3:GetBucketLocation","s3:ListBucket","s3:ListBucketMultipartUploads","s3:GetObject","s3:PutObject","s3:DeleteObject","s3:AbortMultipartUpload","s3:ListMultipartUploadParts","s3:GetObjectTagging","s3:PutObjectTagging"'

# The server's buckets, and only the existence of MLflow's (it checks every bucket it knows at start).
# shellcheck disable=SC2086 # the bucket list is split into arguments on purpose
printf '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":[%s],"Resource":[%s]},{"Effect":"Allow","Action":["s3:GetBucketLocation","s3:ListBucket"],"Resource":["arn:aws:s3:::mlflow"]}]}\n' \
  "$OBJECT_ACTIONS" "$(arns $TINYSPHERE_BUCKETS)" > /tmp/tinysphere-buckets.json
printf '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":[%s],"Resource":[%s]}]}\n' \
  "$OBJECT_ACTIONS" "$(arns mlflow)" > /tmp/mlflow-bucket.json
mc admin policy create local tinysphere-buckets /tmp/tinysphere-buckets.json
mc admin policy create local mlflow-bucket /tmp/mlflow-bucket.json

# user NAME PASSWORD POLICY: create the user (or set its password again) and attach the policy once.
user() {
  printf '%s\n' "$2" | mc admin user add local "$1"
  if ! mc admin user info local "$1" --json | grep -q "\"policyName\": *\"$3\""; then
    mc admin policy attach local "$3" --user "$1"
  fi
}
user tinysphere "$MINIO_TINYSPHERE_PASSWORD" tinysphere-buckets
user mlflow "$MINIO_MLFLOW_PASSWORD" mlflow-bucket

# Raw packages stay until imported (the worker tags them), then for the retention period counted from upload.
printf '{"Rules":[{"ID":"expire-imported-packages","Status":"Enabled","Filter":{"Tag":{"Key":"%s","Value":"true"}},"Expiration":{"Days":%s}}]}\n' \
  "$IMPORTED_TAG_KEY" "$days" | mc ilm rule import local/packages
echo "minio-init: buckets, users tinysphere and mlflow, and the package lifecycle ($days days) are in place"
