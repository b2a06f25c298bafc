# Reserve the hugetlb pages the tests use and give them back afterwards.
# Sourced by scripts/test and .ci/run. A reservation the kernel cannot
# satisfy is reported; tests that need the pages skip with that reason.
VMRAS_HUGE_2M=${VMRAS_HUGE_2M:-80}
VMRAS_HUGE_1G=${VMRAS_HUGE_1G:-2}

_hp_dir() { echo "/sys/kernel/mm/hugepages/hugepages-$1kB/nr_hugepages"; }

hugepages_reserve() {
	_hp_saved_2m=$(cat "$(_hp_dir 2048)" 2>/dev/null || echo 0)
	_hp_saved_1g=$(cat "$(_hp_dir 1048576)" 2>/dev/null || echo 0)
	_hp_set 2048 "$VMRAS_HUGE_2M" "$_hp_saved_2m"
	_hp_set 1048576 "$VMRAS_HUGE_1G" "$_hp_saved_1g"
}

# _hp_set KB WANT SAVED: raise the pool to at least WANT.
_hp_set() {
	local f got
	f=$(_hp_dir "$1")
	[[ $2 -gt $3 && -w $f ]] || return 0
	echo "$2" >"$f" 2>/dev/null || true
	got=$(cat "$f")
	if [[ $got -lt $2 ]]; then
		echo "hugepages: asked for $2 pages of $1 kB, the kernel gave $got" >&2
	fi
}

hugepages_restore() {
	local f
	f=$(_hp_dir 2048)
	[[ -w $f ]] && echo "$_hp_saved_2m" >"$f" 2>/dev/null
	f=$(_hp_dir 1048576)
	[[ -w $f ]] && echo "$_hp_saved_1g" >"$f" 2>/dev/null
	return 0
}
