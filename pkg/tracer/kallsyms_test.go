package tracer

import (
	"strings"
	"testing"
)

func TestParseMemcgOOMText(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    [4]uint64
		wantErr bool
	}{
		{
			name: "both, out of order, duplicates and modules",
			in: `ffffffff816b1ae0 t try_charge_memcg
ffffffff816adc00 t mem_cgroup_out_of_memory
ffffffff816adc00 t mem_cgroup_out_of_memory
ffffffff816ade40 T mem_cgroup_print_oom_context
ffffffff816b1f00 t mem_cgroup_charge_statistics
ffffffffc0001000 t foo	[ext4]
`,
			want: [4]uint64{0xffffffff816adc00, 0xffffffff816ade40, 0xffffffff816b1ae0, 0xffffffff816b1f00},
		},
		{
			name: "inlined into try_charge_memcg",
			in: `ffffffff816b1ae0 t try_charge_memcg
ffffffff816b1f00 t next
`,
			want: [4]uint64{0xffffffff816b1ae0, 0xffffffff816b1f00},
		},
		{
			name: "a data symbol of the same name is not text",
			in: `ffffffff816b1ae0 d try_charge_memcg
ffffffff816b1f00 t next
`,
			wantErr: true,
		},
		{
			name: "addresses hidden",
			in: `0000000000000000 t mem_cgroup_out_of_memory
0000000000000000 t try_charge_memcg
`,
			wantErr: true,
		},
		{name: "empty", in: "", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMemcgOOMText(strings.NewReader(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %x, want %x", got, tc.want)
			}
		})
	}
}
