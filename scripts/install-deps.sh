#!/usr/bin/env bash
# Install the Debian 12 packages yolo-evolve needs to build, test and run.
# Run as root (or with sudo). Safe to run again.
set -euo pipefail
packages=(
	build-essential meson ninja-build pkg-config
	libyaml-dev libsqlite3-dev libcsv-dev libcjson-dev libdnnl-dev libjpeg62-turbo-dev libpng-dev libcairo2-dev fonts-dejavu-core
	libmicrohttpd-dev chromium wrk
	libcmocka-dev sqlite3 clang clang-format llvm libclang-rt-14-dev procps slurm-wlm munge valgrind
	# tests/e2e/ultralytics.sh: the ultralytics package in a venv over Debian's torch
	python3-venv python3-pip python3-torch python3-torchvision python3-opencv python3-numpy
	python3-yaml python3-matplotlib python3-pandas python3-scipy python3-psutil python3-pil
	python3-requests python3-tqdm
)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
