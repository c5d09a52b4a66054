package mountinfo_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/leakwatch/leakwatch/pkg/mountinfo"
)

func TestParse(t *testing.T) {
	const in = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,memory rw,relatime shared:7 - cgroup cgroup rw,cpu,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:40 /sub /mnt/with\040space rw - ext4 /dev/sda1 rw
not a mountinfo line
`
	mounts, err := mountinfo.Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mountinfo.Mount{
		{Root: "/", Point: "/sys/fs/cgroup", FSType: "tmpfs", Options: "rw,mode=755"},
		{Root: "/", Point: "/sys/fs/cgroup/cpu,memory", FSType: "cgroup", Options: "rw,cpu,memory"},
		{Root: "/", Point: "/sys/fs/cgroup/unified", FSType: "cgroup2", Options: "rw"},
		{Root: "/sub", Point: "/mnt/with space", FSType: "ext4", Options: "rw"},
	}
	if !slices.Equal(mounts, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", mounts, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n")
	f.Add("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
	f.Add("1 2 3:4 /a\\134b /c\\040d rw - tracefs tracefs rw\n - \n")
	f.Fuzz(func(t *testing.T, in string) {
		mounts, err := mountinfo.Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, m := range mounts {
			if m.FSType == "" || strings.ContainsAny(m.FSType, " \n") {
				t.Fatalf("bad fs type %q from %q", m.FSType, in)
			}
		}
	})
}
