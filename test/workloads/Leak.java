// Leak: a JVM workload driven line by line on stdin, like memwork.
//   leak N   retain N MiB more in 1 MiB byte arrays, written to
//   nop      answer once start-up is over
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;

public class Leak {
    static final List<byte[]> kept = new ArrayList<>();

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        for (String line; (line = in.readLine()) != null; ) {
            String[] f = line.trim().split("\\s+");
            switch (f[0]) {
                case "leak" -> {
                    for (int i = 0; i < Integer.parseInt(f[1]); i++) {
                        byte[] b = new byte[1 << 20];
                        java.util.Arrays.fill(b, (byte) 1);
                        kept.add(b);
                    }
                    System.out.println("ok");
                }
                case "nop" -> System.out.println("ok");
                case "exit" -> System.exit(0);
                default -> System.out.println("err unknown command");
            }
        }
    }
}
