#!/bin/sh
# One-shot MinIO set-up (compose service `minio-init`, image minio/mc): the bucket, private, and
# an application user whose access is limited to it. Safe to run again: every step is idempotent.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${SCRIPTORIUM_STORAGE__BUCKET:?}" "${SCRIPTORIUM_STORAGE__ACCESS_KEY:?}" "${SCRIPTORIUM_STORAGE__SECRET_KEY:?}"
BUCKET="$SCRIPTORIUM_STORAGE__BUCKET"
POLICY="scriptorium-${BUCKET}"

mc alias set fleet "${MINIO_URL:-http://minio:9000}" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "fleet/${BUCKET}"
mc anonymous set none "fleet/${BUCKET}"

cat > /tmp/policy.json <<POLICY_JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::${BUCKET}"]},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::${BUCKET}/*"]}
  ]
}
POLICY_JSON
mc admin policy create fleet "$POLICY" /tmp/policy.json
mc admin user add fleet "$SCRIPTORIUM_STORAGE__ACCESS_KEY" "$SCRIPTORIUM_STORAGE__SECRET_KEY"
# Attaching a policy that is already attached is an error; detach first so reruns succeed.
mc admin policy detach fleet "$POLICY" --user "$SCRIPTORIUM_STORAGE__ACCESS_KEY" >/dev/null 2>&1 || true
mc admin policy attach fleet "$POLICY" --user "$SCRIPTORIUM_STORAGE__ACCESS_KEY"
echo "bucket ${BUCKET} ready for user ${SCRIPTORIUM_STORAGE__ACCESS_KEY}"
