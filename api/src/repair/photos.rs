//! Repair photos: checked by their bytes (JPEG, PNG or WebP, whatever the file
//! is called), stored under the data directory with random names, and served
//! back through short-lived signed URLs that an `<img>` tag can use.

use std::{io::Read, path::Path};

use async_graphql::{Context, Upload};
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{
    AppContext,
    error::{ApiError, ApiResult},
    graphql::ids::{self, Kind},
};

const FOLDER: &str = "repair-photos";

pub struct AcceptedPhoto {
    content_type: &'static str,
    extension: &'static str,
    bytes: Vec<u8>,
}

pub struct StoredPhoto {
    pub content_type: &'static str,
    pub byte_size: i64,
    pub storage_name: String,
}

/// The image type, judged by the file's first bytes.
pub fn sniff(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Some(("image/jpeg", "jpg")),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(("image/png", "png")),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(("image/webp", "webp")),
        _ => None,
    }
}

/// Reads and checks the uploads of one request against the count and size limits.
pub async fn accept(
    ctx: &Context<'_>,
    uploads: Vec<Upload>,
    max_count: usize,
    max_bytes: usize,
) -> ApiResult<Vec<AcceptedPhoto>> {
    if uploads.len() > max_count {
        return Err(ApiError::bad_input("photos", format!("at most {max_count} photos")));
    }
    let mut accepted = Vec::with_capacity(uploads.len());
    for (index, upload) in uploads.iter().enumerate() {
        let field = format!("photos.{index}");
        let file = upload.value(ctx).map_err(|_| ApiError::bad_input(&field, "is not an uploaded file"))?.content;
        let bytes = tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::new();
            file.take(max_bytes as u64 + 1).read_to_end(&mut bytes).map(|_| bytes)
        })
        .await
        .map_err(|err| ApiError::Internal(format!("reading an upload failed: {err}")))?
        .map_err(|_| ApiError::bad_input(&field, "could not be read"))?;
        if bytes.len() > max_bytes {
            return Err(ApiError::bad_input(&field, format!("must be at most {} MiB", max_bytes / (1024 * 1024))));
        }
        let (content_type, extension) =
            sniff(&bytes).ok_or_else(|| ApiError::bad_input(&field, "must be a JPEG, PNG or WebP image"))?;
        accepted.push(AcceptedPhoto { content_type, extension, bytes });
    }
    Ok(accepted)
}

pub fn path(data_dir: &Path, storage_name: &str) -> std::path::PathBuf {
    data_dir.join(FOLDER).join(storage_name)
}

pub async fn store(data_dir: &Path, photos: Vec<AcceptedPhoto>) -> ApiResult<Vec<StoredPhoto>> {
    if photos.is_empty() {
        return Ok(Vec::new());
    }
    let folder = data_dir.join(FOLDER);
    tokio::fs::create_dir_all(&folder)
        .await
        .map_err(|err| ApiError::Internal(format!("cannot create the photo folder: {err}")))?;
    let mut stored = Vec::with_capacity(photos.len());
    for photo in photos {
        let storage_name = format!("{}.{}", hex::encode(rand::random::<[u8; 16]>()), photo.extension);
        if let Err(err) = tokio::fs::write(folder.join(&storage_name), &photo.bytes).await {
            remove(data_dir, &stored).await;
            return Err(ApiError::Internal(format!("cannot store a photo: {err}")));
        }
        stored.push(StoredPhoto {
            content_type: photo.content_type,
            byte_size: photo.bytes.len() as i64,
            storage_name,
        });
    }
    Ok(stored)
}

/// Best effort: files of an order that was not saved.
pub async fn remove(data_dir: &Path, stored: &[StoredPhoto]) {
    for photo in stored {
        let _ = tokio::fs::remove_file(path(data_dir, &photo.storage_name)).await;
    }
}

fn signature(app: &AppContext, photo_id: i64, expires: i64) -> ApiResult<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&app.hashing_key)
        .map_err(|_| ApiError::Internal("media signing key rejected".into()))?;
    mac.update(format!("repair-photo:{photo_id}:{expires}").as_bytes());
    Ok(mac)
}

/// A URL for the photo that works without a token until it expires.
pub fn signed_url(app: &AppContext, photo_id: i64) -> ApiResult<String> {
    let ttl = chrono::Duration::from_std(app.settings.media_url_ttl)
        .map_err(|_| ApiError::Internal("media URL TTL out of range".into()))?;
    let expires = (Utc::now() + ttl).timestamp();
    let signature = hex::encode(signature(app, photo_id, expires)?.finalize().into_bytes());
    Ok(format!(
        "/media/repair-photos/{}?expires={expires}&signature={signature}",
        ids::encode(Kind::RepairPhoto, photo_id).0
    ))
}

/// Whether a signed URL's parts are genuine and not expired.
pub fn verify(app: &AppContext, photo_id: i64, expires: i64, signature_hex: &str) -> bool {
    if expires < Utc::now().timestamp() {
        return false;
    }
    let (Ok(mac), Ok(presented)) = (signature(app, photo_id, expires), hex::decode(signature_hex)) else {
        return false;
    };
    mac.verify_slice(&presented).is_ok()
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn recognises_images_by_content() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0]).map(|t| t.0), Some("image/jpeg"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").map(|t| t.0), Some("image/png"));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 ").map(|t| t.0), Some("image/webp"));
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"), None);
        assert_eq!(sniff(b""), None);
    }
}
