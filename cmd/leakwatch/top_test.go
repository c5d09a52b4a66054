package main

import (
	"bytes"
	"strings"
	"testing"
)

// Gone containers come last in top, marked, with no figure that reads as
// current (the API lists them last; an older agent may not), and a leak a
// container went with is not shown as a current one.
func TestTopListsGoneContainersLastAndMarked(t *testing.T) {
	ttl := 12.0
	list := []apiContainer{
		{ID: "1", Cgroup: "/dead", Memory: 230 << 20, Limit: 1 << 30, Growth: 4 << 20, Confidence: 0.97,
			Leaking: true, TimeToLimit: &ttl, OOMKills: 1, Gone: true, WasLeaking: true},
		{ID: "2", Cgroup: "/live", Memory: 64 << 20, Growth: 1 << 20, Confidence: 0.9, Leaking: true},
		{ID: "3", Cgroup: "/quiet", Memory: 8 << 20},
	}
	var out bytes.Buffer
	printTop(&out, list, 10)
	rows := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(rows) != 4 {
		t.Fatalf("%d rows, want a header and 3:\n%s", len(rows), out.String())
	}
	for i, id := range []string{"2", "3", "1"} {
		if f := strings.Fields(rows[i+1]); f[0] != id {
			t.Errorf("row %d is container %s, want %s:\n%s", i+1, f[0], id, out.String())
		}
	}
	gone := rows[3]
	if !strings.HasSuffix(gone, "gone (was LEAK)  /dead") || strings.Contains(gone, "230") || strings.Contains(gone, "0.97") {
		t.Errorf("gone row %q: want it marked gone, with no memory, growth or confidence", gone)
	}
	if f := strings.Fields(gone); f[len(f)-5] != "1" { // OOM, then "gone (was LEAK)", then the name
		t.Errorf("gone row %q: OOM kills not shown", gone)
	}
}
