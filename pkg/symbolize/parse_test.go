package symbolize

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
)

func TestParseMapsLine(t *testing.T) {
	tests := []struct {
		line    string
		want    mapsEntry
		wantErr bool
	}{
		{
			line: "7f2c4a028000-7f2c4a1bd000 r-xp 00028000 fd:01 1835023                    /usr/lib/x86_64-linux-gnu/libc.so.6",
			want: mapsEntry{Start: 0x7f2c4a028000, End: 0x7f2c4a1bd000, Perms: "r-xp", Offset: 0x28000, DevMajor: 0xfd, DevMinor: 1, Inode: 1835023, Path: "/usr/lib/x86_64-linux-gnu/libc.so.6"},
		},
		{
			line: "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/my app (deleted)",
			want: mapsEntry{Start: 0x400000, End: 0x452000, Perms: "r-xp", DevMajor: 8, DevMinor: 2, Inode: 173521, Path: "/usr/bin/my app", Deleted: true},
		},
		{
			line: "7ffd5b9e6000-7ffd5b9e8000 r-xp 00000000 00:00 0                          [vdso]",
			want: mapsEntry{Start: 0x7ffd5b9e6000, End: 0x7ffd5b9e8000, Perms: "r-xp", Path: "[vdso]"},
		},
		{
			line: "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ",
			want: mapsEntry{Start: 0x7f0000000000, End: 0x7f0000001000, Perms: "rw-p"},
		},
		{line: "7f0000000000-7f0000001000 rw-p 00000000 00:00", wantErr: true},
		{line: "7f0000001000-7f0000000000 rw-p 00000000 00:00 0", wantErr: true},
		{line: "zz-7f0000000000 rw-p 00000000 00:00 0", wantErr: true},
		{line: "0-1 rw 0 0:0 0", wantErr: true},
		{line: "0-1 rw-p 0 00 0", wantErr: true},
		{line: "0-1 rw-p 0 0:0 -1", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseMapsLine(tt.line)
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: error %v, want error %t", tt.line, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("%q:\n got %+v\nwant %+v", tt.line, got, tt.want)
		}
	}
}

func TestParseMapsSelf(t *testing.T) {
	data, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skipf("no procfs: %v", err)
	}
	entries, err := parseMaps(data)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	found := false
	for _, e := range entries {
		found = found || (e.executable() && e.Path == exe)
	}
	if !found {
		t.Errorf("no executable mapping of %s in %d entries", exe, len(entries))
	}
}

func TestPerfMapLookup(t *testing.T) {
	pm := parsePerfMap([]byte("" +
		"7f0000001000 40 LazyCompile:~foo /app/a.js:1\n" +
		"0x7f0000002000 0x20 Builtin:ArrayPush\n" +
		"garbage line\n" +
		"7f0000003000 0 zero_size\n" +
		"7f0000002000 10 Recompiled\n" +
		"7f0000004000 10"))
	for _, tt := range []struct {
		addr uint64
		want string
	}{
		{0x7f0000001000, "LazyCompile:~foo /app/a.js:1"},
		{0x7f000000103f, "LazyCompile:~foo /app/a.js:1"},
		{0x7f0000001040, ""},
		{0x7f0000002008, "Recompiled"},
		{0x7f0000002018, "Builtin:ArrayPush"},
		{0x7f0000003000, ""},
		{0x7f0000004000, ""},
		{0, ""},
	} {
		got, _ := pm.lookup(tt.addr)
		if got != tt.want {
			t.Errorf("%#x: %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestDemangle(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"_ZN2lw6Widget4growEi", "lw::Widget::grow"},
		{"_ZNSt6vectorIiSaIiEE9push_backERKi", "std::vector::push_back"},
		{"_ZN4core3fmt5write17h0123456789abcdefE", "core::fmt::write"},
		{"_RNvCs1234_7mycrate4main", "mycrate::main"},
		{"main", "main"},
		{"_Zgarbage", "_Zgarbage"},
	} {
		if got := demangleName(tt.in); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestStatStartTime(t *testing.T) {
	stat := "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615\n"
	got, err := statStartTime([]byte(stat))
	if err != nil || got != 987654 {
		t.Errorf("start time %d, %v; want 987654", got, err)
	}
	if _, err := statStartTime([]byte("1 (x) S 1")); err == nil {
		t.Error("short stat parsed")
	}
}

func TestParseNotes(t *testing.T) {
	var b bytes.Buffer
	note := func(name string, typ uint32, desc []byte) {
		le := func(v uint32) { b.Write([]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}) }
		le(uint32(len(name)))
		le(uint32(len(desc)))
		le(typ)
		b.WriteString(name)
		b.Write(make([]byte, (4-len(name)%4)%4))
		b.Write(desc)
		b.Write(make([]byte, (4-len(desc)%4)%4))
	}
	note("Go\x00\x00", 4, []byte("abc/def"))
	note("GNU\x00", 3, []byte{0xde, 0xad, 0xbe, 0xef})
	gnu, goID := parseNotes(b.Bytes(), binary.LittleEndian)
	if gnu != "deadbeef" || goID != "abc/def" {
		t.Errorf("notes: gnu %q go %q", gnu, goID)
	}
	for i := range b.Len() {
		parseNotes(b.Bytes()[:i], binary.LittleEndian) // must not panic
	}
}

func ExampleSymbolizer_Symbolize() {
	s, err := New(Config{}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = s.Close() }()
	// Stacks come from the tracer: innermost first, return addresses after.
	pid := uint32(os.Getpid())
	if err := s.Capture(pid, 0); err != nil {
		fmt.Println(err)
		return
	}
	locs, err := s.Symbolize(pid, 0, []uint64{0x10})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Nothing is mapped at 0x10: the location keeps its address only.
	fmt.Println(len(locs), len(locs[0].Frames), locs[0].Mapping == nil)
	// Output: 1 0 true
}
