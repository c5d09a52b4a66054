/* Selects the architecture's vmlinux.h; see hack/gen-vmlinux.sh for why they differ. */
#if defined(__TARGET_ARCH_x86)
#include "amd64/vmlinux.h"
#elif defined(__TARGET_ARCH_arm64)
#include "arm64/vmlinux.h"
#else
#error "unsupported architecture: build with -D__TARGET_ARCH_x86 or -D__TARGET_ARCH_arm64"
#endif
