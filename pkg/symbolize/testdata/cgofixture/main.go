// Command cgofixture is a Go process with C code, linked externally as
// cgo programs are, for the symbolizer's tests: it prints the address of a
// C function and of a Go function, then waits until its stdin closes.
package main

/*
#include <stdint.h>

__attribute__((noinline)) static int leakwatch_c_grow(int n) { return n * 2 + 1; }

static uintptr_t leakwatch_c_addr(void) { return (uintptr_t)&leakwatch_c_grow; }
*/
import "C"

import (
	"fmt"
	"io"
	"os"
	"reflect"
)

//go:noinline
func goGrow() int { return int(C.leakwatch_c_grow(2)) }

func main() {
	_ = goGrow()
	fmt.Printf("addr %#x\ngoaddr %#x\n", uintptr(C.leakwatch_c_addr()), reflect.ValueOf(goGrow).Pointer())
	_, _ = io.Copy(io.Discard, os.Stdin)
}
