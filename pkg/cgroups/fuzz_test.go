package cgroups

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

func FuzzParseFlatKeyed(f *testing.F) {
	for _, seed := range []string{
		"anon 301989888\nfile 104857600\nkernel_stack 589824\n",
		"oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
		"low 0\nhigh 0\nmax max\n",
		"",
		"\n\n",
		"key\n",
		"a 1 2\n",
		"a -1\n",
		"a 18446744073709551616\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kv, err := parseFlatKeyed(data)
		if err != nil {
			return
		}
		// What parsed must print and parse back to the same map.
		var b strings.Builder
		for k, v := range kv {
			if k == "" || strings.ContainsAny(k, " \t\n\r\v\f") {
				t.Fatalf("key %q has white space", k)
			}
			fmt.Fprintf(&b, "%s %d\n", k, v)
		}
		again, err := parseFlatKeyed([]byte(b.String()))
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if !maps.Equal(kv, again) {
			t.Fatalf("round trip: %v != %v", kv, again)
		}
	})
}

func FuzzMemoryPathFromProcCgroup(f *testing.F) {
	f.Add("4:memory:/kubepods/pod/abc\n0::/init.scope\n")
	f.Add("0::/\n")
	f.Add("::::\n")
	f.Fuzz(func(t *testing.T, data string) {
		for _, v := range []Version{V1, V2} {
			p, ok := memoryPathFromProcCgroup(data, v)
			if ok && !strings.HasPrefix(p, "/") {
				t.Fatalf("path %q does not start with /", p)
			}
		}
	})
}
