"""A Bela board over SSH (asyncssh): check it, deploy to it, benchmark on it, watch its CPU."""
