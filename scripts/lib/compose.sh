# shellcheck shell=bash
# Helpers shared by scripts/build-local-images and scripts/compose-e2e (sourced, not run).

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# COMPOSE: `docker compose` (v2 plugin) where it exists, else docker-compose (1.28+, profiles).
compose_detect() {
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        die "neither 'docker compose' nor docker-compose is installed"
    fi
}

# "service image" lines of the resolved compose file (arguments: compose options).
compose_images() {
    "${COMPOSE[@]}" "$@" config | awk '
        /^services:/ { in_services = 1; next }
        in_services && /^[^ ]/ { in_services = 0 }
        in_services && /^  [A-Za-z0-9_.-]+:[ ]*$/ { service = $1; sub(/:$/, "", service) }
        in_services && /^    image:/ { print service, $2 }'
}
