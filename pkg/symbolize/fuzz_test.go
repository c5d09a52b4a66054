package symbolize

import (
	"bytes"
	"fmt"
	"testing"
)

// heapMapper serves loadObject from memory, bounded by the data.
func heapMapper(data []byte) mapper {
	return func(off, length int64) ([]byte, func(), error) {
		if off < 0 || length < 0 || off > int64(len(data)) || length > int64(len(data))-off {
			return nil, nil, fmt.Errorf("range %d+%d outside %d bytes", off, length, len(data))
		}
		return data[off : off+length], func() {}, nil
	}
}

func FuzzParseMaps(f *testing.F) {
	for _, seed := range []string{
		"00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon\n",
		"7f2c4a028000-7f2c4a1bd000 r-xp 00028000 fd:01 1835023  /usr/lib/libc.so.6 (deleted)\n7ffd5b9e6000-7ffd5b9e8000 r-xp 00000000 00:00 0  [vdso]\n",
		"0-0 ---p 0 0:0 0",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseMaps(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.End < e.Start || len(e.Perms) != 4 {
				t.Fatalf("accepted %+v", e)
			}
			// A line printed back the way the kernel prints it parses
			// to the same entry, unless the path's own blanks or marks
			// make it ambiguous.
			line := fmt.Sprintf("%x-%x %s %08x %02x:%02x %d %s", e.Start, e.End, e.Perms, e.Offset, e.DevMajor, e.DevMinor, e.Inode, e.Path)
			if e.Deleted {
				line += deletedSuffix
			}
			again, err := parseMapsLine(line)
			if err != nil {
				t.Fatalf("reparsing %q: %v", line, err)
			}
			if again.Start != e.Start || again.End != e.End || again.Offset != e.Offset || again.Inode != e.Inode {
				t.Fatalf("%+v reparsed as %+v", e, again)
			}
		}
	})
}

func FuzzParsePerfMap(f *testing.F) {
	for _, seed := range []string{
		"7f0000001000 40 LazyCompile:~foo /app/a.js:1\n0x7f0000002000 0x20 Builtin:ArrayPush\n",
		"ffffffffffffff00 100 wraps\n",
		"1 1 a\n1 1 b\r\n",
		"",
	} {
		f.Add([]byte(seed), uint64(0x7f0000001010))
	}
	f.Fuzz(func(t *testing.T, data []byte, addr uint64) {
		pm := parsePerfMap(data)
		for i, e := range pm.entries {
			if e.end <= e.start || e.name == "" {
				t.Fatalf("bad entry %+v", e)
			}
			if i > 0 && pm.entries[i-1].start > e.start {
				t.Fatal("entries not sorted")
			}
		}
		if name, ok := pm.lookup(addr); ok && name == "" {
			t.Fatal("empty name found")
		}
	})
}

// FuzzLoadObject feeds corrupt ELF files to the loader: it may refuse them
// but must not panic or allocate beyond what the file holds.
func FuzzLoadObject(f *testing.F) {
	// testdata/fuzz/FuzzLoadObject holds a small static executable and
	// broken copies of it.
	f.Add([]byte("\x7fELF\x02\x01\x01"), uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, addr uint64) {
		o, err := loadObject(bytes.NewReader(data), int64(len(data)), heapMapper(data))
		if err != nil {
			return
		}
		for _, a := range []uint64{addr, addr + 1, addr &^ 0xfff} {
			if v, ok := o.vaddr(a); ok {
				o.frames(v)
			}
			o.frames(a)
		}
		o.evict()
	})
}
