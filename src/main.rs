fn main() {
    println!("portent");
}
