// gogrow allocates through main.level1 -> main.level2 -> main.grow for the
// given seconds, keeping at most 4096 slices (about 128 MiB at most).
package main

import (
	"os"
	"strconv"
	"time"
)

var keep [][]byte

//go:noinline
func grow(n int) []byte { b := make([]byte, n); b[0] = 1; return b }

//go:noinline
func level2(i int) []byte { return grow(64 + i%4096*16) }

//go:noinline
func level1(i int) []byte { return level2(i + 1) }

func main() {
	secs, _ := strconv.ParseFloat(os.Args[1], 64)
	end := time.Now().Add(time.Duration(secs * float64(time.Second)))
	for i := 0; time.Now().Before(end); i++ {
		keep = append(keep, level1(i))
		if len(keep) > 4096 {
			keep = keep[:0]
		}
	}
}
