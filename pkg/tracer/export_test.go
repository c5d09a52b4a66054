package tracer

// ReadMapMemory is MapMemory without its once-a-minute reuse, for tests
// that compare it with the kernel's figures read around it.
func (t *Tracer) ReadMapMemory() (uint64, error) { return t.readMapMemory() }
