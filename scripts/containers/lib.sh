# Functions of scripts/container-test (sourced): a Docker engine, the Compose and Buildx CLI
# plugins, and the base images the project's files name. Everything built is cached under
# CONTAINERS_CACHE (default ~/.cache/inventory-sink/containers):
#   docker-root/   the data root of the engine this script starts (images, build cache)
#   docker-config/ DOCKER_CONFIG with cli-plugins/docker-compose and docker-buildx
#   go/ go-build/  the Go module and build caches the two plugins are built from
#   kafka-*-image-jars/  the jars of the Kafka stand-in
# shellcheck shell=bash

CONTAINERS_CACHE="${CONTAINERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/inventory-sink/containers}"
COMPOSE_VERSION="${COMPOSE_VERSION:-v2.40.3}"
BUILDX_VERSION="${BUILDX_VERSION:-v0.29.1}" # the version docker/compose $COMPOSE_VERSION builds with
# Where an engine this script starts keeps its run-time state (short: socket paths are limited).
ENGINE_RUN_DIR="${ENGINE_RUN_DIR:-/run/inventory-sink-docker}"
STANDINS_DIR="$ROOT/scripts/containers/standins"
STARTED_ENGINE_PID=""

say() { printf 'container-test: %s\n' "$*"; }
die() { printf 'container-test: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root (or sudo) to run: $*"; fi
}

apt_install() {
  say "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    || die "apt-get update failed; check the package sources, then retry"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null || die "apt-get install $* failed; install it by hand, then retry"
}

# ------------------------------------------------------------------ engine
engine_works() { timeout 20 docker info >/dev/null 2>&1; }

# Use the engine DOCKER_HOST (or the default socket) names when it answers; else start one of
# our own (Debian's docker.io) with its own data root, exec root and socket. engine_down stops
# only that one.
engine_up() {
  command -v docker >/dev/null || apt_install docker.io
  if engine_works; then
    say "using the running Docker engine ($(docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null || echo "${DOCKER_HOST:-default}"))"
    return
  fi
  local sock="$ENGINE_RUN_DIR/docker.sock" log="$ENGINE_RUN_DIR/dockerd.log"
  if DOCKER_HOST="unix://$sock" engine_works; then
    export DOCKER_HOST="unix://$sock"
    say "using the dockerd an earlier run left on $sock (not stopping it: this run did not start it)"
    return
  fi
  command -v dockerd >/dev/null || apt_install docker.io
  as_root mkdir -p "$ENGINE_RUN_DIR" "$CONTAINERS_CACHE/docker-root"
  say "no Docker engine answers; starting dockerd (data root $CONTAINERS_CACHE/docker-root, socket $sock)"
  as_root sh -c "nohup dockerd --data-root '$CONTAINERS_CACHE/docker-root' \
      --exec-root '$ENGINE_RUN_DIR/exec' --pidfile '$ENGINE_RUN_DIR/dockerd.pid' \
      -H 'unix://$sock' >'$log' 2>&1 & echo \$! >'$ENGINE_RUN_DIR/started.pid'"
  STARTED_ENGINE_PID="$(cat "$ENGINE_RUN_DIR/started.pid")"
  export DOCKER_HOST="unix://$sock"
  local deadline=$((SECONDS + 60))
  until engine_works; do
    kill -0 "$STARTED_ENGINE_PID" 2>/dev/null \
      || die "dockerd exited while starting; see $log"
    ((SECONDS < deadline)) || die "dockerd did not answer within 60 s; see $log"
    sleep 1
  done
  say "dockerd $(docker version --format '{{.Server.Version}}') runs (pid $STARTED_ENGINE_PID)"
}

engine_down() {
  [[ -n "$STARTED_ENGINE_PID" ]] || return 0
  say "stopping the dockerd this run started (pid $STARTED_ENGINE_PID)"
  as_root kill -TERM "$STARTED_ENGINE_PID" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$STARTED_ENGINE_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 1; done
  if kill -0 "$STARTED_ENGINE_PID" 2>/dev/null; then
    as_root kill -KILL "$STARTED_ENGINE_PID" 2>/dev/null || true
  fi
  STARTED_ENGINE_PID=""
}

# ------------------------------------------------------------------ CLI plugins
# Build a Go main package from its own module (its go.mod has replace/exclude directives, so
# `go install module@version` refuses it) into DOCKER_CONFIG/cli-plugins/NAME.
build_plugin() {
  local name="$1" module="$2" version="$3" package="$4" ldflags="$5"
  local target="$DOCKER_CONFIG/cli-plugins/$name"
  if [[ -x "$target" && "$(cat "$target.version" 2>/dev/null)" == "$version" ]]; then
    return
  fi
  command -v go >/dev/null || die "building $name needs Go >= 1.21 (or install $name yourself)"
  say "building $name $version from the Go module proxy (cached under $CONTAINERS_CACHE; ~4 min cold)"
  local -x GOPATH="$CONTAINERS_CACHE/go" GOCACHE="$CONTAINERS_CACHE/go-build" \
    GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0
  local dir log="$CONTAINERS_CACHE/$name-build.log"
  dir="$(go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir" ]] || die "go mod download $module@$version failed"
  mkdir -p "$DOCKER_CONFIG/cli-plugins"
  (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$target.tmp" "$package") \
    >"$log" 2>&1 || die "building $name failed; see $log"
  mv "$target.tmp" "$target"
  echo "$version" >"$target.version"
}

# Compose v2 and Buildx as CLI plugins: the user's own when `docker compose`/`docker buildx`
# work, else built once into a DOCKER_CONFIG of our own (the user's ~/.docker is not touched).
plugins_up() {
  if docker compose version >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1; then
    say "using $(docker compose version | head -n 1) and $(docker buildx version | head -n 1)"
    return
  fi
  export DOCKER_CONFIG="$CONTAINERS_CACHE/docker-config"
  build_plugin docker-compose github.com/docker/compose/v2 "$COMPOSE_VERSION" ./cmd \
    "-X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION"
  build_plugin docker-buildx github.com/docker/buildx "$BUILDX_VERSION" ./cmd/buildx \
    "-X github.com/docker/buildx/version.Version=$BUILDX_VERSION"
  docker compose version >/dev/null 2>&1 || die "docker compose does not run ($DOCKER_CONFIG)"
  say "using $(docker compose version | head -n 1) and $(docker buildx version | head -n 1) ($DOCKER_CONFIG)"
}

# ------------------------------------------------------------------ base images
BASE_IMAGE="inventory-sink/debian-base:bookworm"

# Content hash of a stand-in's build context: a changed recipe rebuilds the image.
standin_hash() { (cd "$STANDINS_DIR/$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16); }

debian_base() {
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return
  command -v mmdebstrap >/dev/null || apt_install mmdebstrap
  local sources tar
  # The machine's own apt sources: no mirror is named here.
  sources="$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
  [[ -n "$sources" ]] || sources=/etc/apt/sources.list
  tar="$(mktemp -d)/rootfs.tar"
  say "building $BASE_IMAGE offline with mmdebstrap (minbase bookworm from $sources)"
  as_root mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$tar" "$sources" \
    || die "mmdebstrap failed"
  docker import "$tar" "$BASE_IMAGE" >/dev/null
  rm -rf "$(dirname "$tar")"
}

standin() {
  local image="$1" recipe="$2" hash context
  hash="$(standin_hash "$recipe")"
  if [[ "$(docker image inspect --format '{{index .Config.Labels "inventory-sink.standin"}}' "$image" 2>/dev/null)" == "$hash" ]]; then
    say "$image: offline stand-in $hash already built"
    return
  fi
  debian_base
  context="$(mktemp -d)"
  cp -a "$STANDINS_DIR/$recipe/." "$context/"
  if [[ "$recipe" == kafka ]]; then
    local jars="$CONTAINERS_CACHE/kafka-4.1.1-image-jars"
    if [[ ! -f "$jars/kafka-tools-4.1.1.jar" ]]; then
      command -v java >/dev/null || apt_install openjdk-17-jre-headless
      command -v mvn >/dev/null || apt_install maven
      say "fetching the Kafka jars with Maven into $jars"
      mvn -q -B -f "$STANDINS_DIR/kafka/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$jars" -DincludeScope=runtime >"$CONTAINERS_CACHE/mvn.log" 2>&1 \
        || die "Maven could not fetch the Kafka jars; see $CONTAINERS_CACHE/mvn.log"
    fi
    cp -a "$jars" "$context/jars"
  fi
  say "$image: building the offline stand-in (scripts/containers/standins/$recipe)"
  docker build --quiet --label "inventory-sink.standin=$hash" -t "$image" "$context" >/dev/null \
    || die "building the $image stand-in failed"
  rm -rf "$context"
}

# The images docker-compose.yml, the Dockerfile and tests/support/services.py name: pulled where
# a registry answers (CONTAINER_TEST_PULL=auto, the default, or always); else, or with
# CONTAINER_TEST_PULL=never (air-gapped), built from Debian's archive as local stand-ins.
base_images() {
  local pull="${CONTAINER_TEST_PULL:-auto}" image recipe
  for pair in python:3.11-slim=python postgres:16-alpine=postgres apache/kafka:4.1.1=kafka; do
    image="${pair%=*}" recipe="${pair#*=}"
    if docker image inspect "$image" >/dev/null 2>&1 \
        && [[ -z "$(docker image inspect --format '{{index .Config.Labels "inventory-sink.standin"}}' "$image")" ]]; then
      say "$image: present"
      continue
    fi
    if [[ "$pull" != never ]] && timeout 300 docker pull -q "$image" >/dev/null 2>&1; then
      say "$image: pulled"
      continue
    fi
    [[ "$pull" == always ]] && die "could not pull $image (CONTAINER_TEST_PULL=always)"
    if [[ "$pull" == auto ]]; then say "$image: no registry answered: air-gapped mode"; fi
    standin "$image" "$recipe"
  done
}
