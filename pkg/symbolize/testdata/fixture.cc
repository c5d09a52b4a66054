// A C++ process for the symbolizer's tests: it prints the address of a
// member function whose symbol is mangled, then waits until stdin closes.
#include <cstdio>
#include <unistd.h>

namespace lw {
struct Widget {
	static void grow(int n);
};
__attribute__((noinline)) void Widget::grow(int n) { __asm__ volatile("" ::"r"(n) : "memory"); }
} // namespace lw

int main() {
	char buf[64];
	lw::Widget::grow(1);
	std::printf("addr %p\n", (void *)&lw::Widget::grow);
	std::fflush(stdout);
	while (read(0, buf, sizeof buf) > 0) {
	}
	return 0;
}
