// goauto: a pure Go program that leaks 1 MiB a second in main.leakMore, for
// ever, with no input: what the CRI tests run as a container.
package main

import "time"

var kept [][]byte

//go:noinline
func leakMore() {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i)
	}
	kept = append(kept, b)
}

func main() {
	for {
		leakMore()
		time.Sleep(time.Second)
	}
}
