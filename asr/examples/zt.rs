fn main() {
    let p = std::env::args().nth(1).unwrap();
    let a = hotline_asr::audio::decode_file(std::path::Path::new(&p)).unwrap();
    let x = a.to_whisper_rate();
    let mut line = String::new();
    for (i, f) in x.chunks(hotline_asr::vad::FRAME * 5).enumerate() {
        line.push_str(&format!("{:4.0}", hotline_asr::vad::frame_db(f)));
        if i % 25 == 24 { println!("{line}"); line.clear(); }
    }
    println!("{line}");
    println!("{:?}", hotline_asr::vad::segment(&x, &Default::default()));
}
