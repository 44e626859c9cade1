#!/bin/sh
# Container entrypoint: one image, the first argument picks what runs.
#
#   pitcrew-entrypoint <app>              serve gateway|budget|workflow|kpi|registry|notify|console with uvicorn
#   pitcrew-entrypoint migrate [<app>]    upgrade one database (or all configured ones) and exit
#   pitcrew-entrypoint wait-migrated <app> [seconds]
#                                         exit 0 once the app's database is at the latest migration
#                                         (a Kubernetes init container, so pods never serve an old schema)
#   pitcrew-entrypoint <anything else>    run it as given (pitcrew token ..., sh, ...)
#
# Serving reads PITCREW_<APP>_HOST (default 0.0.0.0) and PITCREW_<APP>_PORT (default 8000..8004),
# the same settings fields the apps use. PITCREW_MIGRATE_ON_START=true migrates before serving
# (handy for a single instance; with replicas run migrations once, as a Job or one-shot service).
set -eu

usage() {
    echo "usage: pitcrew-entrypoint gateway|budget|workflow|kpi|registry|notify|console | migrate [APP] | wait-migrated APP [SECONDS] | COMMAND..." >&2
    exit 64
}


[ "$#" -ge 1 ] || usage
cmd="$1"
shift

case "$cmd" in
    migrate)
        exec pitcrew migrate "$@"
        ;;
    wait-migrated)
        [ "$#" -ge 1 ] || usage
        exec pitcrew-wait-migrated "$@"
        ;;
    gateway|budget|workflow|kpi|registry|notify|console)
        case "$cmd" in
            gateway)  module=gateway.main:app;           default_port=8000 ;;
            budget)   module=services.budget.main:app;   default_port=8001 ;;
            workflow) module=services.workflow.main:app; default_port=8002 ;;
            kpi)      module=services.kpi.main:app;      default_port=8003 ;;
            registry) module=services.registry.main:app; default_port=8004 ;;
            console)  module=console.main:app;           default_port=8006 ;;
            notify)   module=services.notify.main:app;   default_port=8005 ;;
        esac
        upper=$(echo "$cmd" | tr '[:lower:]' '[:upper:]')
        host=$(printenv "PITCREW_${upper}_HOST" || echo "0.0.0.0")
        port=$(printenv "PITCREW_${upper}_PORT" || echo "$default_port")
        if [ "${PITCREW_MIGRATE_ON_START:-false}" = "true" ]; then
            pitcrew migrate "$cmd"
        fi
        # One process per container: scale with replicas, not workers. Proxy headers are trusted
        # because the container is only reachable through the platform's network.
        exec uvicorn "$module" \
            --host "$host" --port "$port" \
            --proxy-headers --forwarded-allow-ips="*" \
            --no-access-log --no-server-header \
            --timeout-graceful-shutdown "${PITCREW_GRACEFUL_SHUTDOWN_SECONDS:-20}"
        ;;
    -h|--help|help)
        usage
        ;;
    *)
        exec "$cmd" "$@"
        ;;
esac
