package cfact
import ("testing";"fmt";"os";"github.com/apcera/deployhook/integration/harness")
func TestX(t *testing.T){
 c:=harness.StartConsul(t, harness.WithLimits(100000, 200000))
 fmt.Println("ADDR", c.Addr())
 os.WriteFile("/tmp/cfact/addr", []byte(c.Addr()), 0644)
 <-make(chan int)
}
