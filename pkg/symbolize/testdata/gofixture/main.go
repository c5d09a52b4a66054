// Command gofixture is a Go process for the symbolizer's tests: it prints
// the entry of a function and a return address inside a function inlined
// into it, then waits until its stdin closes.
package main

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
)

// callers returns the return address of its call.
//
//go:noinline
func callers() uintptr {
	var pcs [1]uintptr
	runtime.Callers(2, pcs[:])
	return pcs[0]
}

// grow is small enough to be inlined into outer.
func grow() uintptr {
	return callers() // MARK:callers
}

//go:noinline
func outer() uintptr {
	return grow() // MARK:grow
}

func main() {
	ret := outer()
	fmt.Printf("addr %#x\nret %#x\n", reflect.ValueOf(outer).Pointer(), ret)
	_, _ = io.Copy(io.Discard, os.Stdin)
}
