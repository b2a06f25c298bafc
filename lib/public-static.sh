#!/bin/sh
# The installed static library: every object linked into one relocatable
# object in which only the public API (default visibility) stays global,
# so a VMM that links libvmras.a gets no internal names (vr_*, ...).
#   public-static.sh LD OBJCOPY AR INPUT.a OUTPUT.a
set -eu
ld=$1 objcopy=$2 ar=$3 in=$4 out=$5
obj=$out.o
"$ld" -r --whole-archive "$in" -o "$obj"
"$objcopy" --localize-hidden "$obj"
rm -f "$out"
"$ar" rcs "$out" "$obj"
rm -f "$obj"
