package corpusgen

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The committed corpus is Write(dir, DefaultSeed): the production family
// added beside it must not move a byte of it.
func TestWriteMatchesCommittedCorpus(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, DefaultSeed); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no files written: %v", err)
	}
	for _, f := range files {
		got, _ := os.ReadFile(f)
		want, err := os.ReadFile(filepath.Join("..", filepath.Base(f)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the committed test/corpus", filepath.Base(f))
		}
	}
}
