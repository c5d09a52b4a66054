package tracer

import (
	"slices"
	"testing"
)

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{in: "0", want: []int{0}},
		{in: "0-3", want: []int{0, 1, 2, 3}},
		{in: "0-1,4,6-7", want: []int{0, 1, 4, 6, 7}},
		{in: "", wantErr: true},
		{in: "3-1", wantErr: true},
		{in: "a", wantErr: true},
		{in: "0-", wantErr: true},
		{in: "0-99999999", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseCPUList(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestHostErrorSaysWhatToDo(t *testing.T) {
	err := &HostError{Requirement: RequireBTF, Problem: "no BTF", Fix: "use a kernel with BTF"}
	if got, want := err.Error(), "no BTF (fix: use a kernel with BTF)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
