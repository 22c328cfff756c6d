#!/usr/bin/env bash
# Install Debian's slurm-wlm and munge for the local SLURM cluster of tests/test_slurm_*.py.
# Where they cannot be installed (not root, no apt), say so and go on: those tests then skip with the reason.
set -uo pipefail
if command -v sbatch >/dev/null && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; } \
    || echo "warning: could not install slurm-wlm/munge; the SLURM tests will be skipped" >&2
else
  echo "note: not root or no apt-get; the SLURM tests will be skipped" >&2
fi
exit 0
