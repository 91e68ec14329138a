//! `coffer keygen`: a new age X25519 identity for coffer (or any age tool), or with
//! `--signing` a snapshot signing key for the backup host.

use crate::cli::KeygenArgs;
use crate::keys::{write_identity, write_new_identity};
use anyhow::Result;

pub fn run(args: &KeygenArgs) -> Result<u8> {
    if args.signing
        && let Some(file) = &args.output
    {
        let key = crate::format::seal::write_new_key(file)?;
        eprintln!(
            "wrote signing key {} (mode 0600); point [encryption] signing_key at it on the backup host",
            file.display()
        );
        eprintln!("public key (put it in [encryption] trusted_signers where you restore):");
        println!("{}", key.public);
        return Ok(crate::exit::OK);
    }
    match &args.output {
        Some(file) => {
            let public = write_new_identity(file)?;
            eprintln!(
                "wrote identity {} (mode 0600); keep it away from the backups",
                file.display()
            );
            eprintln!("public key (put it in [encryption] recipients):");
            println!("{public}");
        }
        None => {
            let id = age::x25519::Identity::generate();
            let public = id.to_public().to_string();
            write_identity(&mut std::io::stdout().lock(), &id, &public)?;
            eprintln!("public key: {public}");
        }
    }
    Ok(crate::exit::OK)
}
