package agent

import "testing"

func TestParseStatStartTime(t *testing.T) {
	for in, want := range map[string]uint64{
		"1234 (sleep) S 1 1234 1234 0 -1 4194304 90 0 0 0 0 0 0 0 20 0 1 0 345678 5758976 128 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n": 345678 * 1e7,
		"42 (a (weird) name) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7 0 0\n":                                                                              7 * 1e7,
		"42 (short) R 1\n": 0,
		"no parenthesis":   0,
		"42 (x) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99999999999999999999 0\n": 0,
	} {
		got, ok := parseStatStartTime([]byte(in))
		if got != want || ok != (want != 0) {
			t.Errorf("parseStatStartTime(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

func FuzzParseStatStartTime(f *testing.F) {
	f.Add([]byte("1234 (sleep) S 1 1234 1234 0 -1 4194304 90 0 0 0 0 0 0 0 20 0 1 0 345678 5758976 128\n"))
	f.Add([]byte("1 ())) R 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, ok := parseStatStartTime(b); !ok && v != 0 {
			t.Fatalf("failed parse returned %d", v)
		}
	})
}
