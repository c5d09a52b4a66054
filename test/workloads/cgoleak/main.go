// cgoleak: a Go program that leaks through C (cgo), for unwinding tests.
// Commands on stdin, one answer line each: "leak N" keeps N more MiB,
// malloc'd and touched by C functions two levels deep (c_level2 ←
// c_level1), called from main.leakViaC; "nop"; "exit".
package main

/*
#include <stdlib.h>
#include <string.h>

volatile long c_sink;

__attribute__((noinline)) static long c_level2(long mib)
{
	for (long i = 0; i < mib; i++) {
		char *p = malloc(1 << 20);
		if (!p)
			return -1;
		memset(p, 1, 1 << 20);
		c_sink += (long)p;
	}
	return 0;
}

__attribute__((noinline)) long c_level1(long mib)
{
	long r = c_level2(mib);
	c_sink += r;
	return r + 1;
}
*/
import "C"

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

//go:noinline
func leakViaC(mib int) {
	C.c_level1(C.long(mib))
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "leak":
			var n int
			if _, err := fmt.Sscan(f[1], &n); err != nil {
				fmt.Println("error", err)
				continue
			}
			leakViaC(n)
		case len(f) == 1 && f[0] == "exit":
			return
		}
		fmt.Println("ok")
	}
}
