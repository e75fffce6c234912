# What pack.sh (here) and run.sh (on the GPU machine) share: the case list and
# the name of each case's artifact. Sourced, not run.

# The cases of cases.txt whose step is $1 (numerics, sanitize, skip), one per
# line as "name|kernel options|run options|targets", trimmed; targets default
# to sm_90.
gpu_cases() {
  local want=$1 file
  file="$(dirname "${BASH_SOURCE[0]}")/cases.txt"
  awk -F'|' -v want="$want" '
    function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
    /^[ \t]*(#|$)/ { next }
    trim($1) == want {
      targets = NF >= 5 ? trim($5) : ""
      if (targets == "") targets = "sm_90"
      print trim($2) "|" trim($3) "|" trim($4) "|" targets
    }' "$file"
}

# The artifact file of a case: a hash of its targets and kernel options, so
# cases that share a kernel share its artifact.
gpu_artifact_name() {
  printf '%s|%s' "$1" "$2" | md5sum | cut -c1-16
}

# A case's kernel options as heed-run takes them: without heed-compile's
# serving flags (--kv-lens, --q-lens, --cu-seqlens-q, --cu-seqlens-kv), which
# heed-run derives from its own run options (--kv-lens=L0,L1,..., --q-lens=...,
# --packed). One option per line.
gpu_run_kopts() {
  local w
  for w in $1; do
    case $w in
      --kv-lens | --q-lens | --cu-seqlens-q | --cu-seqlens-kv) ;;
      *) printf '%s\n' "$w" ;;
    esac
  done
}
