# tolerance.awk - spec/tolerance.toml (clause 11) -> build/pcn_tolerance.h for the C tests.
# Emits every number of the [factor], [relative] and [propagation] tables as
#   #define PCN_TOL_<TABLE>_<KEY> <value>
# so the C tests use the policy's constants without retyping them.
BEGIN {
    print "/* Generated from spec/tolerance.toml by tests/tolerance.awk: do not edit. */"
    print "#ifndef PCN_TOLERANCE_H"
    print "#define PCN_TOLERANCE_H"
}
/^[ \t]*\[/ {
    table = $0
    gsub(/[][ \t]/, "", table)
    next
}
/^[ \t]*[A-Za-z0-9_]+[ \t]*=/ {
    line = $0
    sub(/#.*/, "", line)
    split(line, kv, "=")
    key = kv[1]; value = kv[2]
    gsub(/[ \t]/, "", key); gsub(/[ \t]/, "", value)
    if (value ~ /^[-+0-9.eE]+$/ && table != "")
        printf "#define PCN_TOL_%s_%s %s\n", toupper(table), toupper(key), value
}
END { print "#endif" }
