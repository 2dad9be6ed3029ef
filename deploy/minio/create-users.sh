#!/bin/sh
# Compose's `users` step: MinIO users with the least each deployable needs, made with the root
# credentials that only this step and `seed` see. Idempotent: a rerun updates secrets and policies.
#   job (JOB_S3_USER):         read photos/, read-write bundles/  (job-read-photos-write-bundles.json)
#   service (SERVICE_S3_USER): read bundles/ only                 (service-read-bundles.json)
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing local/fruits
mc admin policy create local fruitclf-job /policies/job-read-photos-write-bundles.json
mc admin policy create local fruitclf-service /policies/service-read-bundles.json
mc admin user add local "$JOB_S3_USER" "$JOB_S3_SECRET"
mc admin user add local "$SERVICE_S3_USER" "$SERVICE_S3_SECRET"

attach() { # POLICY USER; a policy already attached is not an error on a rerun
    if ! out=$(mc admin policy attach local "$1" --user "$2" 2>&1); then
        case $out in *"already in effect"*) ;; *) echo "$out" >&2 && exit 1 ;; esac
    fi
}
attach fruitclf-job "$JOB_S3_USER"
attach fruitclf-service "$SERVICE_S3_USER"
