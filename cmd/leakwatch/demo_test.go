package main

import (
	"bytes"
	"testing"

	"github.com/google/pprof/profile"
)

// The demo names the function on top of the default sample type, as pprof
// -top does, wherever it is among the sample types, not the last one.
func TestDemoTopFunctionReadsTheDefaultSampleType(t *testing.T) {
	fn := func(id uint64, name string) *profile.Location {
		return &profile.Location{ID: id, Line: []profile.Line{{Function: &profile.Function{ID: id, Name: name}}}}
	}
	leak, cache := fn(1, "main.demoLeak"), fn(2, "cache_drop")
	p := &profile.Profile{
		SampleType: []*profile.ValueType{
			{Type: "alloc_objects", Unit: "count"}, {Type: "alloc_space", Unit: "bytes"},
			{Type: "inuse_objects", Unit: "count"}, {Type: "inuse_space", Unit: "bytes"},
		},
		DefaultSampleType: "alloc_space",
		Sample: []*profile.Sample{
			{Location: []*profile.Location{leak}, Value: []int64{4, 4 << 20, 0, 0}},
			{Location: []*profile.Location{cache}, Value: []int64{0, 0, 9, 64 << 20}},
		},
		Location: []*profile.Location{leak, cache},
		Function: []*profile.Function{leak.Line[0].Function, cache.Line[0].Function},
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	top, err := topFunction(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if top != "main.demoLeak" {
		t.Errorf("top function %q, want main.demoLeak (the default, alloc_space), not what the last type puts first", top)
	}
}
