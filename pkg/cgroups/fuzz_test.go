package cgroups

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

// FuzzParseFlatKeyed feeds memory.stat, memory.events and
// memory.oom_control parsing: what parses must print and parse back the
// same, and parseMemoryKeys must fail or agree with the pairs parsed.
func FuzzParseFlatKeyed(f *testing.F) {
	for _, seed := range []string{
		"anon 301989888\nfile 104857600\nkernel_stack 589824\n",
		"total_rss 1\ntotal_cache 2\nhierarchical_memory_limit 9223372036854771712\n",
		"oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
		"low 0\nhigh 0\nmax max\noom 2\noom_kill 1\noom_group_kill 0\n",
		"",
		"\n\n",
		"key\n",
		"a 1 2\n",
		"a -1\n",
		"a 18446744073709551616\n",
		"anon 1\nanon 2\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kv, err := flatKeyedMap(data)
		m, merr := parseMemoryKeys(data)
		if (merr == nil) != (err == nil) {
			t.Fatalf("parseMemoryKeys error %v, flatKeyed error %v", merr, err)
		}
		if err != nil {
			return
		}
		_, hasHier := kv["hierarchical_memory_limit"]
		if m.totalRSS != kv["total_rss"] || m.hierLimit != kv["hierarchical_memory_limit"] || m.hasHierLimit != hasHier ||
			m.anon != kv["anon"] || m.percpu != kv["percpu"] || m.oom != kv["oom"] || m.oomKill != kv["oom_kill"] {
			t.Fatalf("parseMemoryKeys %+v disagrees with %v", m, kv)
		}
		// What parsed must print and parse back to the same pairs.
		var b strings.Builder
		for k, v := range kv {
			if k == "" || strings.ContainsAny(k, " \t\n\r\v\f") {
				t.Fatalf("key %q has white space", k)
			}
			fmt.Fprintf(&b, "%s %d\n", k, v)
		}
		again, err := flatKeyedMap([]byte(b.String()))
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if !maps.Equal(kv, again) {
			t.Fatalf("round trip: %v != %v", kv, again)
		}
	})
}

// flatKeyedMap collects what flatKeyed walks; a later duplicate key wins,
// as it does in the decoders.
func flatKeyedMap(b []byte) (map[string]uint64, error) {
	kv := map[string]uint64{}
	p := flatKeyed{rest: b}
	for p.next() {
		kv[string(p.key)] = p.value
	}
	return kv, p.err
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
