package tracer

// The BPF object is built by bpf2go for both architectures; its output is
// committed so that `go build` needs no clang. `make generate` reruns this.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I../../bpf -I../../bpf/include" -target amd64,arm64 -type event -type mapping_key -type mapping -type stack_trace -type fault_key -type fault_value -type counters -type drop_reason -type event_type -type mapping_kind -type stack_copy_header -type stack_copy_kind -type copy_result leakwatch ../../bpf/leakwatch.bpf.c
